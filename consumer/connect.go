package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/redact"
)

// ConnectOptions say how to reach NATS.
type ConnectOptions struct {
	// URLs, comma-separated or several; default nats://127.0.0.1:4222.
	URLs      string
	Name      string
	CredsFile string // a .creds file (JWT + nkey seed)
	NKeyFile  string // an nkey seed file
	Token     string
	User      string
	Password  string
	// TLS: a CA to trust and an optional client certificate.
	CAFile   string
	CertFile string
	KeyFile  string
	// ReconnectWait is the base wait between reconnects (jittered);
	// default 2s. kdsync reconnects forever.
	ReconnectWait time.Duration
}

// Check reports every problem with the settings at once, before any dial:
// each server URL must be nats://, tls://, ws:// or wss:// with a host (an
// http:// URL would otherwise be retried for ever as "no servers
// available"). Errors show URLs with their credentials masked.
func (o ConnectOptions) Check() error {
	var errs []error
	for _, s := range strings.Fields(strings.ReplaceAll(o.URLs, ",", " ")) {
		if !strings.Contains(s, "://") {
			s = "nats://" + s // as nats.go reads host:port
		}
		u, err := url.Parse(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("nats: server URL %s does not parse", redact.URL(s)))
		case !slices.Contains([]string{"nats", "tls", "ws", "wss"}, strings.ToLower(u.Scheme)):
			errs = append(errs, fmt.Errorf("nats: server URL %s: the scheme must be nats://, tls://, ws:// or wss://, not %q", redact.URL(s), u.Scheme+"://"))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("nats: server URL %s has no host", redact.URL(s)))
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("nats: a client certificate needs both cert and key files"))
	}
	if o.CredsFile != "" && o.NKeyFile != "" {
		errs = append(errs, errors.New("nats: give a creds file or an nkey file, not both"))
	}
	return errors.Join(errs...)
}

// Connect dials NATS with reconnects forever and logs connection changes.
func Connect(o ConnectOptions, log *slog.Logger, onChange func(connected bool)) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.URLs == "" {
		o.URLs = nats.DefaultURL
	}
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "kdsync"
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = 2 * time.Second
	}
	if onChange == nil {
		onChange = func(bool) {}
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			onChange(false)
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			onChange(true)
			log.Info("NATS reconnected", "server", redact.URL(nc.ConnectedUrl()))
		}),
		nats.ClosedHandler(func(*nats.Conn) { onChange(false) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("NATS async error", "err", err)
		}),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey file: %w", err)
		}
		opts = append(opts, opt)
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	urls := strings.Join(strings.Fields(strings.ReplaceAll(o.URLs, ",", " ")), ",")
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect: %w", err)
	}
	onChange(true)
	log.Info("NATS connected", "server", redact.URL(nc.ConnectedUrl()))
	return nc, nil
}

// ConnectRetrying is Connect, retrying the first connection with backoff
// until ctx ends, so that a process may start before its broker.
func ConnectRetrying(ctx context.Context, o ConnectOptions, log *slog.Logger, onChange func(connected bool)) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := time.Second
	for {
		nc, err := Connect(o, log, onChange)
		if err == nil {
			return nc, nil
		}
		if !errors.Is(err, nats.ErrNoServers) || ctx.Err() != nil {
			return nil, err
		}
		log.Warn("NATS not reachable yet; retrying", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 15*time.Second)
	}
}

// Drain drains nc (subscriptions end, pending publishes and acks are
// flushed) and waits until it is closed or timeout passes. nats.Conn.Drain
// alone returns at once, so a process that exits right after it may lose
// its last acknowledgements and Naks.
func Drain(nc *nats.Conn, timeout time.Duration) error {
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("nats: drain: %w", err)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !nc.IsClosed() {
		select {
		case <-tick.C:
		case <-deadline:
			nc.Close()
			return fmt.Errorf("nats: drain: not done after %s; closed", timeout)
		}
	}
	return nil
}

// ConnectJetStream dials NATS as the tool commands do (no reconnect
// handlers, no metrics) and opens JetStream; close closes the connection.
func ConnectJetStream(o ConnectOptions) (js jetstream.JetStream, close func(), err error) {
	nc, err := Connect(o, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	if js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nc.Close, nil
}
