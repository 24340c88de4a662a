package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/envflag"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/ingress"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/mapping"
	"github.com/kdsync/kdsync/scim"
	"github.com/kdsync/kdsync/service"
)

// ingestConfig is kdsync ingest's configuration, parsed from flags and
// the environment.
type ingestConfig struct {
	nats      consumer.ConnectOptions
	ingress   ingressConfig
	addr      string
	httpAddr  string
	logLevel  string
	logFormat string
}

// ingressConfig is the webhook ingress's configuration that kdsync run
// and kdsync ingest share: everything but the addresses (whose defaults
// differ) and the event size limit (each command's -max-event-size).
type ingressConfig struct {
	options         ingress.Options
	tlsCert, tlsKey string
	// scim is nil unless SCIM tokens are given.
	scim *scim.Options
}

// ingressFlags declares the flags of ingressConfig on fs and returns a
// function that yields it after parsing. The options are not validated:
// kdsync run checks them only when its ingress is on.
func ingressFlags(fs *flag.FlagSet) func() (ingressConfig, error) {
	var c ingressConfig
	o := &c.options
	fs.StringVar(&c.tlsCert, "ingress-tls-cert", "", "TLS certificate file of the ingress (empty: plain HTTP, e.g. behind a TLS proxy)")
	fs.StringVar(&c.tlsKey, "ingress-tls-key", "", "TLS key file of the ingress")
	fs.StringVar(&o.SubjectPrefix, "ingress-subject-prefix", ingress.DefaultSubjectPrefix, "events are published on <prefix>.<action>.<userId>")
	tokens := fs.String("ingress-token", "", "bearer tokens accepted, comma-separated (prefer the environment or -ingress-token-file)")
	tokenFile := fs.String("ingress-token-file", "", "file of bearer tokens, comma- or newline-separated")
	secrets := fs.String("ingress-secret", "", "Standard Webhooks signing secrets (whsec_<base64>), comma-separated for rotation")
	secretFile := fs.String("ingress-secret-file", "", "file of signing secrets, comma- or newline-separated")
	fs.DurationVar(&o.Tolerance, "ingress-tolerance", ingress.DefaultTolerance, "how far a signed request's webhook-timestamp may be from now; webhook ids are remembered as long")
	fs.IntVar(&o.ReplayCache, "ingress-replay-cache", ingress.DefaultReplayCache, "webhook ids remembered at most, against replays")
	fs.Int64Var(&o.MaxBytes, "ingress-max-bytes", ingress.DefaultMaxBytes, "largest request body, a whole batch included")
	fs.IntVar(&o.MaxBatch, "ingress-max-batch", ingress.DefaultMaxBatch, "most events in one batch")
	fs.DurationVar(&o.PublishTimeout, "ingress-publish-timeout", ingress.DefaultPublishTimeout, "how long to wait for JetStream's acknowledgement before answering 503")
	fs.DurationVar(&o.RetryAfter, "ingress-retry-after", ingress.DefaultRetryAfter, "Retry-After of a 503")
	fs.BoolVar(&o.AllowUnauthenticated, "ingress-allow-unauthenticated", false, "accept requests without credentials (local testing only)")
	var so scim.Options
	scimTokens := fs.String("scim-token", "", "SCIM bearer tokens (at least 16 characters), comma-separated for rotation; set: serve SCIM 2.0 under /scim/v2 on the ingress address (prefer the environment or -scim-token-file)")
	scimTokenFile := fs.String("scim-token-file", "", "file of SCIM bearer tokens, comma- or newline-separated")
	mappingFile := fs.String("mapping-file", "", "SCIM mapping file: YAML of CEL expressions (scope, userId, deptId, role, status, departments); empty: the default mapping (see docs/scim.md)")
	fs.StringVar(&so.Bucket, "scim-bucket", scim.DefaultBucket, "JetStream KV bucket of the SCIM resources")
	fs.StringVar(&so.Source, "scim-source", scim.DefaultSource, "CloudEvents source of the events SCIM writes publish")
	fs.DurationVar(&so.SweepInterval, "scim-sweep-interval", scim.DefaultSweepInterval, "how often SCIM writes left pending (a crash) are finished and unmappable users mapped again; negative: only at start")
	return func() (ingressConfig, error) {
		var errs []error
		st, err := envflag.Secrets[kdapi.Secret]("SCIM token", *scimTokens, *scimTokenFile)
		errs = append(errs, err)
		if len(st) > 0 {
			so.Tokens = st
			m, err := mapping.LoadOrDefault(*mappingFile)
			errs = append(errs, err)
			so.Mapping = m
			c.scim = &so
		} else if *mappingFile != "" {
			errs = append(errs, errors.New("mapping-file is set but SCIM is off: give KDSYNC_SCIM_TOKEN"))
		}
		t, err := envflag.Secrets[kdapi.Secret]("ingress token", *tokens, *tokenFile)
		errs = append(errs, err)
		o.Tokens = t
		s, err := envflag.Secrets[kdapi.Secret]("ingress secret", *secrets, *secretFile)
		errs = append(errs, err)
		o.Secrets = s
		if (c.tlsCert == "") != (c.tlsKey == "") {
			errs = append(errs, errors.New("TLS needs both -ingress-tls-cert and -ingress-tls-key"))
		}
		return c, errors.Join(errs...)
	}
}

func ingestFlags(fs *flag.FlagSet) func() (ingestConfig, error) {
	var c ingestConfig
	conn := natsFlags(fs)
	fs.StringVar(&c.addr, "ingress-addr", ":8080", "address of the webhook ingress: POST /events, and /metrics, /healthz, /readyz unless -http-addr is given")
	fs.StringVar(&c.httpAddr, "http-addr", "", "separate address of /metrics, /healthz and /readyz (empty: the ingress address)")
	shared := ingressFlags(fs)
	maxEvent := fs.Int("max-event-size", handlers.DefaultMaxEventSize, "largest event accepted, in bytes (as kdsync run's)")
	strictNumbers := fs.Bool("strict-numbers", false, "refuse a deptId sent as a JSON number above 2^53 (as kdsync run's)")
	scimReplicas := fs.Int("scim-replicas", 1, "replicas of the SCIM bucket when kdsync ingest creates it")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "json", "json or text")
	return func() (ingestConfig, error) {
		var errs []error
		c.nats = conn()
		c.nats.Name = "kdsync-ingest"
		ic, err := shared()
		errs = append(errs, err)
		c.ingress = ic
		c.ingress.options.Decoder.MaxSize = *maxEvent
		c.ingress.options.Decoder.StrictNumbers = *strictNumbers
		if *maxEvent < 1024 || *maxEvent > 1<<20 {
			errs = append(errs, fmt.Errorf("max-event-size %d: want 1024 to 1048576", *maxEvent))
		}
		if c.addr == "" {
			errs = append(errs, errors.New("ingress-addr is required"))
		}
		errs = append(errs, c.ingress.options.Validate())
		if c.ingress.scim != nil {
			c.ingress.scim.Replicas = *scimReplicas
			c.ingress.scim.SubjectPrefix = c.ingress.options.SubjectPrefix
			errs = append(errs, c.ingress.scim.Validate())
		}
		return c, errors.Join(errs...)
	}
}

// cmdIngest runs the webhook ingress until ctx ends.
func cmdIngest(ctx context.Context, args []string, stderr io.Writer) error {
	f := newFlags("kdsync ingest")
	f.SetOutput(stderr)
	config := ingestFlags(f.FlagSet)
	parseErr := f.Parse(args)
	if errors.Is(parseErr, flag.ErrHelp) {
		return parseErr
	}
	c, err := config()
	log, logErr := newLogger(stderr, c.logLevel, c.logFormat)
	if err := errors.Join(parseErr, err, logErr, checkAddr("ingress-addr", c.addr), checkAddr("http-addr", c.httpAddr)); err != nil {
		return invalid("kdsync ingest", err)
	}
	if err := service.RunIngest(ctx, service.IngestOptions{
		NATS: c.nats, HTTPAddr: c.httpAddr, Decoder: c.ingress.options.Decoder, Logger: log,
		Ingress: service.IngressOptions{Addr: c.addr, TLSCert: c.ingress.tlsCert, TLSKey: c.ingress.tlsKey, Options: c.ingress.options, SCIM: c.ingress.scim},
	}); err != nil {
		log.Error("kdsync ingest exited with error", "err", err)
		return errUsage // already logged
	}
	log.Info("kdsync ingest stopped")
	return nil
}
