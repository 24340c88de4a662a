package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/console"
	"github.com/kdsync/kdsync/kdapi"
)

// ConsoleOptions configure the web console inside kdsync run. It reads
// and acts through run's NATS connection, KooDrive client and metrics
// registry, with the consumer's stream and bucket names.
type ConsoleOptions struct {
	// Addr is the console's address; empty (and no Listener): no console.
	// Keep it private: bind to localhost, or serve TLS behind a gateway.
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// TLSCert and TLSKey, both set, serve HTTPS.
	TLSCert, TLSKey string
	// Options configure the console; JetStream, KooDrive, Gatherer, the
	// names and Logger are set by Run. In shadow mode it is read-only.
	Options console.Options
}

func (o *ConsoleOptions) enabled() bool { return o.Addr != "" || o.Listener != nil }

// validate checks what Run cannot fill in.
func (o *ConsoleOptions) validate() error {
	if !o.enabled() {
		return nil
	}
	var errs []error
	if len(o.Options.Token) < console.MinTokenLen {
		errs = append(errs, fmt.Errorf("console: KDSYNC_CONSOLE_TOKEN must be at least %d characters", console.MinTokenLen))
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		errs = append(errs, errors.New("console: TLS needs both a certificate and a key"))
	}
	if o.Options.OIDC != nil {
		errs = append(errs, o.Options.OIDC.Validate())
	}
	return errors.Join(errs...)
}

// startConsole serves the console until ctx ends; a failure to serve
// after the start is logged.
func startConsole(ctx context.Context, o Options, nc *nats.Conn, kd *kdapi.Client, log *slog.Logger) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	co := o.Console.Options
	c := o.Consumer
	co.JetStream, co.KooDrive, co.Gatherer, co.Logger = js, kd, o.Gatherer, log
	co.Stream, co.Consumer, co.OutcomeStream, co.OutcomePrefix = c.Stream, c.Consumer, c.OutcomeStream, c.OutcomePrefix
	co.DLQStream, co.DLQPrefix, co.StateBucket, co.GuardBucket = c.DLQStream, c.DLQPrefix, c.StateBucket, c.GuardBucket
	co.Replicas = c.Replicas
	if o.APIUserID != "" {
		co.Protect = map[string]bool{o.APIUserID: true}
	}
	if o.Shadow {
		// A sync or a replay publishes into the stream the active
		// instances apply: a shadow writes nothing.
		co.ReadOnly = true
	}
	srv, err := console.New(ctx, co)
	if err != nil {
		return err
	}
	ln := o.Console.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", o.Console.Addr); err != nil {
			return fmt.Errorf("console: listen on %s: %w", o.Console.Addr, err)
		}
	}
	log.Info("serving the web console", "addr", ln.Addr().String(), "tls", o.Console.TLSCert != "", "read_only", co.ReadOnly)
	go func() {
		if err := srv.Serve(ctx, ln, o.Console.TLSCert, o.Console.TLSKey); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("the web console stopped serving", "err", err)
		}
	}()
	return nil
}
