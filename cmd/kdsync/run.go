package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kdsync/kdsync/console"
	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/envflag"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/metrics"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/service"
)

// serviceFlags declares the flags of the service on fs and returns a
// function that builds the Options after parsing, with log as their
// Logger.
func serviceFlags(fs *flag.FlagSet) func(log *slog.Logger) (service.Options, error) {
	var o service.Options
	c := &o.Consumer
	conn := natsFlags(fs)

	streamName.bind(fs, &c.Stream)
	subjects := fs.String("stream-subjects", "identity.>", "subjects of the stream when kdsync creates it, comma-separated")
	fs.StringVar(&c.Consumer, "consumer", outcome.DefaultDurable, "durable consumer name")
	fs.StringVar(&c.Filter, "filter", "identity.employee.>", "consumer filter subject")
	fs.BoolVar(&c.Manage, "manage", true, "create or update the streams, consumer and KV bucket; when false, bind to existing ones")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas of the streams and bucket kdsync creates")
	outcomeStreamName.bind(fs, &c.OutcomeStream)
	outcomePrefixName.bind(fs, &c.OutcomePrefix)
	dlqStreamName.bind(fs, &c.DLQStream)
	dlqPrefixName.bind(fs, &c.DLQPrefix)
	stateBucketName.bind(fs, &c.StateBucket)
	fs.StringVar(&c.StateCache, "state-cache", consumer.DefaultStateCache, "cache of per-user records read from the state bucket: entries (20000) or a memory budget (4MiB), least recently used evicted first; 0: read every event's")
	fs.IntVar(&c.Concurrency, "concurrency", 512, "most KooDrive calls in flight at once: the ceiling of the adaptive limit (enough for 100 ms per call at 5,000 calls/s)")
	fs.IntVar(&o.ConcurrencyMin, "concurrency-min", 4, "fewest KooDrive calls in flight the adaptive limit goes down to")
	fs.Float64Var(&o.APIRate, "api-rate", 0, "KooDrive's quota in requests/s, when known: never exceeded (with partitions, each instance keeps to the share of the partitions it holds); 0: none, one is learnt from its 429s")
	fs.IntVar(&c.MaxAckPending, "max-ack-pending", 1024, "events held unacknowledged at most")
	fs.IntVar(&c.PullBatch, "pull-batch", 0, "events per pull request (0: the max ack pending)")
	fs.DurationVar(&c.AckWait, "ack-wait", 30*time.Second, "JetStream ack wait (kdsync signals progress well within it)")
	fs.DurationVar(&c.RetryBudget, "retry-budget", 6*time.Hour, "how long transient KooDrive failures are retried before an event is dead-lettered")
	fs.DurationVar(&c.RetryInitial, "retry-initial", 200*time.Millisecond, "first retry wait")
	fs.DurationVar(&c.RetryMax, "retry-max", time.Minute, "longest retry wait")
	fs.DurationVar(&c.BreakerProbe, "breaker-probe", 5*time.Second, "while KooDrive fails for everyone, one probe per this interval")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long calls under way may finish on shutdown")
	maxEvent := fs.Int("max-event-size", 64<<10, "largest event accepted, in bytes")
	fs.BoolVar(&c.Decoder.StrictNumbers, "strict-numbers", false, "refuse a deptId sent as a JSON number above 2^53, for producers known to encode numbers as doubles (by default a number is read exactly)")
	fs.IntVar(&c.Partitions, "partitions", 0, "split the stream by user into this many partitions so that several instances share the work (0: one consumer, one instance)")
	fs.StringVar(&c.InstanceID, "instance-id", "", "this instance's name among those sharing the stream (default: host name and a random suffix)")
	fs.DurationVar(&c.PinnedTTL, "pinned-ttl", 10*time.Second, "how soon a silent instance loses its partitions to the others")

	api := apiFlags(fs)
	fs.BoolVar(&o.HardDelete, "hard-delete", false, "employee.deleted calls DELETE (destroys the user's files); otherwise it disables the user")
	defaultDept := fs.Int64("default-dept-id", 0, "department of a hire that names none (KooDrive requires one; 0: none)")
	existsCodes := fs.String("already-exists-codes", strings.Join(kdapi.DefaultAlreadyExistsCodes, ","), "KooDrive codes meaning \"user already exists\"")

	deprov := fs.String("deprovision-limit", "", "mass-deprovisioning guard: at most N disables and deletes per window, e.g. 50/10m; past it they are held for an operator (kdsync guard); empty: off")
	guardBucketName.bind(fs, &c.GuardBucket)
	parkStreamName.bind(fs, &c.ParkStream)
	parkPrefixName.bind(fs, &c.ParkPrefix)
	fs.DurationVar(&o.Reconcile.Interval, "reconcile-interval", 0, "compare KooDrive with the desired state this often and export the drift as metrics (0: off)")
	fs.StringVar(&o.Reconcile.Source, "reconcile-source", "", "desired state for periodic reconciliation: an HRIS export (CSV or JSON Lines), read afresh each pass (empty: kdsync's own records)")
	fs.BoolVar(&o.Reconcile.Complete, "reconcile-complete", false, "the source lists everyone who should have an account (users beyond it are unexpected)")
	fs.BoolVar(&o.Reconcile.Apply, "reconcile-apply", false, "publish repair events for the drift found (off: report and export only)")
	fs.Float64Var(&o.Reconcile.Rate, "reconcile-rate", 5, "KooDrive requests per second of periodic reconciliation")
	fs.IntVar(&o.Reconcile.MaxRepairs, "reconcile-max-repairs", 1000, "a pass with more repairs than this publishes none")
	fs.IntVar(&o.Reconcile.MaxDisables, "reconcile-max-disables", 50, "a pass with more disables than this publishes none")
	mode := fs.String("mode", "active", "active, or shadow: consume through its own consumer, read KooDrive, publish the calls it would make and the difference they would cause on kdsync.shadow.<result>.<action>.<userId>, write nothing")
	shadow := fs.Bool("shadow", false, "the same as -mode shadow")
	fs.StringVar(&o.HTTPAddr, "http-addr", ":9090", "address of /metrics, /healthz and /readyz (empty or off: none)")
	fs.BoolVar(&o.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the HTTP address (keep that address private)")
	fs.StringVar(&o.Console.Addr, "console-addr", "", "serve the web console on this address, e.g. 127.0.0.1:8090 (empty: off); keep it private")
	consoleToken := fs.String("console-token", "", "token operators sign in to the console with, at least 16 characters (prefer the environment or -console-token-file)")
	consoleTokenFile := fs.String("console-token-file", "", "file holding the console token")
	fs.BoolVar(&o.Console.Options.ReadOnly, "console-readonly", false, "the console shows everything and changes nothing (no sync, replay, release or reject)")
	fs.DurationVar(&o.Console.Options.SessionTTL, "console-session-ttl", 8*time.Hour, "a console session ends this long after signing in")
	fs.DurationVar(&o.Console.Options.IdleTimeout, "console-idle-timeout", 30*time.Minute, "a console session unused this long ends")
	fs.StringVar(&o.Console.TLSCert, "console-tls-cert", "", "certificate file: serve the console over HTTPS (with -console-tls-key)")
	fs.StringVar(&o.Console.TLSKey, "console-tls-key", "", "key file of -console-tls-cert")
	var oidc console.OIDC
	fs.StringVar(&oidc.Issuer, "console-oidc-issuer", "", "console sign-in through this OpenID Connect provider too (its issuer URL; empty: token only)")
	fs.StringVar(&oidc.ClientID, "console-oidc-client-id", "", "the console's client id at the OIDC provider")
	oidcSecret := fs.String("console-oidc-client-secret", "", "the console's client secret at the OIDC provider (prefer the environment or -console-oidc-client-secret-file)")
	oidcSecretFile := fs.String("console-oidc-client-secret-file", "", "file holding the OIDC client secret")
	fs.StringVar(&oidc.RedirectURL, "console-oidc-redirect-url", "", "the console's callback registered at the provider: https://<console>/login/callback")
	oidcAllowed := fs.String("console-oidc-allowed", "", "who may sign in through OIDC: e-mail addresses and @domains, comma-separated (verified addresses only)")
	fs.StringVar(&oidc.Name, "console-oidc-name", "", "the provider's name on the sign-in button (default: single sign-on)")
	return func(log *slog.Logger) (service.Options, error) {
		var errs []error
		o.Logger = log
		c.StreamSubjects = envflag.List(*subjects)
		c.Decoder.MaxSize = *maxEvent
		o.NATS = conn()
		a, err := api(false)
		errs = append(errs, err)
		o.APIBaseURL, o.AppID, o.AppSecret, o.APIUserID, o.APIToken, o.APITimeout, o.NotFound =
			a.BaseURL, a.AppID, a.AppSecret, a.UserID, a.Token, a.Timeout, a.NotFound
		o.Console.Options.Token, err = envflag.Secret[kdapi.Secret]("console token", *consoleToken, *consoleTokenFile)
		errs = append(errs, err)
		if oidc.Issuer != "" {
			oidc.ClientSecret, err = envflag.Secret[kdapi.Secret]("console OIDC client secret", *oidcSecret, *oidcSecretFile)
			errs = append(errs, err)
			oidc.Allowed = envflag.List(*oidcAllowed)
			o.Console.Options.OIDC = &oidc
		}
		if *defaultDept != 0 {
			o.DefaultDeptID = defaultDept
		}
		o.ExistsCodes = envflag.List(*existsCodes)
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		// envflag ignores an empty variable; an operator who writes
		// KDSYNC_HTTP_ADDR= means "none", as the help says.
		if v, ok := os.LookupEnv("KDSYNC_HTTP_ADDR"); ok && strings.TrimSpace(v) == "" && !set["http-addr"] || o.HTTPAddr == "off" {
			o.HTTPAddr = ""
		}
		if c.DeprovisionLimit, err = guard.ParseLimit(*deprov); err != nil {
			errs = append(errs, err)
		}
		switch {
		case *mode == "shadow" || *shadow:
			errs = append(errs, o.ApplyShadow(func(setting string) bool { return set[setting] }))
		case *mode != "active":
			errs = append(errs, fmt.Errorf("mode %q: want active or shadow", *mode))
		}
		o.Build = metrics.ReadBuildInfo(version)
		return o, errors.Join(errs...)
	}
}

// runFlags declares kdsync run's flags; the returned function builds the
// service's options once they are parsed, its logger writing to stderr.
func runFlags() (*cmdFlags, func(stderr io.Writer) (service.Options, error)) {
	f := newFlags("kdsync run")
	options := serviceFlags(f.FlagSet)
	ingressAddr := f.String("ingress-addr", "", "serve the webhook ingress (POST /events, as kdsync ingest does) on this address too, on run's NATS connection; the -ingress-* flags apply (empty: none)")
	ingressOptions := ingressFlags(f.FlagSet)
	logger := logFlags(f.FlagSet)
	return f, func(stderr io.Writer) (service.Options, error) {
		log, logErr := logger(stderr)
		o, err := options(log)
		var ingressErr error
		o.Ingress, ingressErr = ingressOptions()
		o.Ingress.Addr = *ingressAddr
		return o, errors.Join(logErr, err, ingressErr, o.Validate())
	}
}

func cmdRun(ctx context.Context, args []string, _, stderr io.Writer) error {
	f, options := runFlags()
	f.SetOutput(stderr)
	o, err := parseConfig(f, args, func() (service.Options, error) { return options(stderr) })
	if err != nil {
		return err
	}
	log := o.Logger
	if err := service.Run(ctx, o); err != nil {
		log.Error("kdsync exited with error", "err", err)
		return errUsage // already logged
	}
	log.Info("kdsync stopped")
	return nil
}
