package main

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/kdsync/kdsync/envflag"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/ingress"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/mapping"
	"github.com/kdsync/kdsync/scim"
	"github.com/kdsync/kdsync/service"
)

// ingressFlags declares the webhook ingress's flags that kdsync run and
// kdsync ingest share, everything but the address (whose default
// differs) and the event size limit (each command's -max-event-size), and
// returns a function that yields its options after parsing. The options
// are not validated: kdsync run checks them only when its ingress is on.
func ingressFlags(fs *flag.FlagSet) func() (service.IngressOptions, error) {
	var c service.IngressOptions
	o := &c.Options
	fs.StringVar(&c.TLSCert, "ingress-tls-cert", "", "TLS certificate file of the ingress (empty: plain HTTP, e.g. behind a TLS proxy)")
	fs.StringVar(&c.TLSKey, "ingress-tls-key", "", "TLS key file of the ingress")
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
	return func() (service.IngressOptions, error) {
		var errs []error
		st, err := envflag.Secrets[kdapi.Secret]("SCIM token", *scimTokens, *scimTokenFile)
		errs = append(errs, err)
		if len(st) > 0 {
			so.Tokens = st
			so.Mapping, err = mapping.LoadOrDefault(*mappingFile)
			errs = append(errs, err)
			c.SCIM = &so
		} else if *mappingFile != "" {
			errs = append(errs, errors.New("mapping-file is set but SCIM is off: give KDSYNC_SCIM_TOKEN"))
		}
		o.Tokens, err = envflag.Secrets[kdapi.Secret]("ingress token", *tokens, *tokenFile)
		errs = append(errs, err)
		o.Secrets, err = envflag.Secrets[kdapi.Secret]("ingress secret", *secrets, *secretFile)
		errs = append(errs, err)
		return c, errors.Join(errs...)
	}
}

// ingestFlags declares kdsync ingest's flags on fs; the returned function
// builds its options once they are parsed, its logger writing to stderr.
func ingestFlags(fs *flag.FlagSet) func(stderr io.Writer) (service.IngestOptions, error) {
	var o service.IngestOptions
	conn := natsFlags(fs)
	addr := fs.String("ingress-addr", ":8080", "address of the webhook ingress: POST /events, and /metrics, /healthz, /readyz unless -http-addr is given")
	fs.StringVar(&o.HTTPAddr, "http-addr", "", "separate address of /metrics, /healthz and /readyz (empty: the ingress address)")
	shared := ingressFlags(fs)
	fs.IntVar(&o.Decoder.MaxSize, "max-event-size", handlers.DefaultMaxEventSize, "largest event accepted, in bytes (as kdsync run's)")
	fs.BoolVar(&o.Decoder.StrictNumbers, "strict-numbers", false, "refuse a deptId sent as a JSON number above 2^53 (as kdsync run's)")
	scimReplicas := fs.Int("scim-replicas", 1, "replicas of the SCIM bucket when kdsync ingest creates it")
	logger := logFlags(fs)
	return func(stderr io.Writer) (service.IngestOptions, error) {
		var errs []error
		var err error
		o.NATS = conn()
		o.NATS.Name = "kdsync-ingest"
		o.Ingress, err = shared()
		errs = append(errs, err)
		o.Ingress.Addr = *addr
		o.Ingress.Options.Decoder = o.Decoder
		if sc := o.Ingress.SCIM; sc != nil {
			sc.Replicas, sc.SubjectPrefix = *scimReplicas, o.Ingress.Options.SubjectPrefix
		}
		o.Logger, err = logger(stderr)
		return o, errors.Join(append(errs, err, o.Validate())...)
	}
}

// cmdIngest runs the webhook ingress until ctx ends.
func cmdIngest(ctx context.Context, args []string, _, stderr io.Writer) error {
	f := newFlags("kdsync ingest")
	f.SetOutput(stderr)
	options := ingestFlags(f.FlagSet)
	o, err := parseConfig(f, args, func() (service.IngestOptions, error) { return options(stderr) })
	if err != nil {
		return err
	}
	if err := service.RunIngest(ctx, o); err != nil {
		o.Logger.Error("kdsync ingest exited with error", "err", err)
		return errUsage // already logged
	}
	o.Logger.Info("kdsync ingest stopped")
	return nil
}
