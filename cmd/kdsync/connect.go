package main

import (
	"errors"
	"flag"
	"strings"
	"time"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/envflag"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/reconcile"
)

// The flags and connections the commands share: NATS (run, ingest,
// publish, dlq, guard, reconcile, user, sync), KooDrive (run, reconcile,
// user, sync), and the names of kdsync's streams, buckets and subjects.

// nameFlag is one of the stream, bucket and subject prefix flags, with
// kdsync run's name and default: a tool reads what kdsync run writes.
type nameFlag struct{ name, value, usage string }

// The name flags.
var (
	streamName        = nameFlag{"stream", outcome.DefaultStream, "JetStream stream of identity events"}
	subjectPrefixName = nameFlag{"subject-prefix", reconcile.DefaultSubjectPrefix, "subject prefix of identity events: <prefix>.<action>.<userId>"}
	outcomeStreamName = nameFlag{"outcome-stream", outcome.DefaultOutcomeStream, "stream of outcomes"}
	outcomePrefixName = nameFlag{"outcome-prefix", outcome.DefaultOutcomePrefix, "subject prefix of outcomes: <prefix>.<result>.<action>.<userId>"}
	dlqStreamName     = nameFlag{"dlq-stream", outcome.DefaultDLQStream, "stream of dead letters"}
	dlqPrefixName     = nameFlag{"dlq-prefix", outcome.DefaultDLQPrefix, "subject prefix of dead letters: <prefix>.<reason>.<action>.<userId>"}
	stateBucketName   = nameFlag{"state-bucket", outcome.DefaultStateBucket, "KV bucket of kdsync's per-user records (watermarks and applied state)"}
	guardBucketName   = nameFlag{"guard-bucket", outcome.DefaultGuardBucket, "KV bucket of the mass-deprovisioning guard"}
	parkStreamName    = nameFlag{"park-stream", outcome.DefaultParkStream, "stream the guard's held events, and their users' later events, are parked in until decided"}
	parkPrefixName    = nameFlag{"park-prefix", outcome.DefaultParkPrefix, "subject prefix of parked events: <prefix>.<user key>"}
)

// bind declares the flag on fs, its value going to p.
func (n nameFlag) bind(fs *flag.FlagSet, p *string) { fs.StringVar(p, n.name, n.value, n.usage) }

// natsFlags declares the NATS connection flags on fs (as kdsync run has
// them) and returns a function that yields the options after parsing.
func natsFlags(fs *flag.FlagSet) func() consumer.ConnectOptions {
	var n consumer.ConnectOptions
	fs.StringVar(&n.URLs, "nats-url", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated")
	fs.StringVar(&n.CredsFile, "nats-creds", "", "NATS credentials file (JWT + nkey seed)")
	fs.StringVar(&n.NKeyFile, "nats-nkey", "", "NATS nkey seed file")
	fs.StringVar(&n.Token, "nats-token", "", "NATS token")
	fs.StringVar(&n.User, "nats-user", "", "NATS user")
	fs.StringVar(&n.Password, "nats-password", "", "NATS password")
	fs.StringVar(&n.CAFile, "nats-ca", "", "CA certificate file to verify the NATS server (TLS)")
	fs.StringVar(&n.CertFile, "nats-cert", "", "client certificate file for NATS (mutual TLS)")
	fs.StringVar(&n.KeyFile, "nats-key", "", "client key file for NATS (mutual TLS)")
	return func() consumer.ConnectOptions { return n }
}

// apiFlags declares the KooDrive client's flags on fs; the returned
// function reads them once parsed, an endpoint required by the tools that
// cannot do without KooDrive (the service checks its own).
func apiFlags(fs *flag.FlagSet) func(endpointRequired bool) (kdapi.Config, error) {
	var c kdapi.Config
	fs.StringVar(&c.BaseURL, "api-base-url", "", "KooDrive endpoint root, e.g. https://intl.myhuaweicloud-koodrive.com (the client appends /koodrive/ose/v1)")
	fs.StringVar(&c.AppID, "app-id", "", "KooDrive app id (app authentication)")
	appSecret := fs.String("app-secret", "", "KooDrive app secret (prefer the environment or -app-secret-file)")
	appSecretFile := fs.String("app-secret-file", "", "file holding the KooDrive app secret")
	fs.StringVar(&c.UserID, "api-user-id", "", "KooDrive user id the app acts as (X-User-Id); never changed by kdsync sync or reconcile")
	apiToken := fs.String("api-token", "", "KooDrive bearer token (instead of app authentication)")
	apiTokenFile := fs.String("api-token-file", "", "file holding the KooDrive bearer token")
	fs.DurationVar(&c.Timeout, "api-timeout", 10*time.Second, "timeout of one KooDrive call")
	notFound := fs.String("not-found-codes", strings.Join(kdapi.DefaultNotFoundCodes, ","), "KooDrive codes meaning \"not found\"")
	return func(endpointRequired bool) (kdapi.Config, error) {
		var secretErr, tokenErr, endpointErr error
		c.AppSecret, secretErr = envflag.Secret[kdapi.Secret]("app secret", *appSecret, *appSecretFile)
		c.Token, tokenErr = envflag.Secret[kdapi.Secret]("api token", *apiToken, *apiTokenFile)
		c.NotFound = envflag.List(*notFound)
		if endpointRequired && c.BaseURL == "" {
			endpointErr = errors.New("the KooDrive endpoint is required (-api-base-url or KDSYNC_API_BASE_URL)")
		}
		return c, errors.Join(secretErr, tokenErr, endpointErr)
	}
}

// protected lists the user the KooDrive app acts as: kdsync reconcile and
// sync never change it.
func protected(c kdapi.Config) map[string]bool {
	p := map[string]bool{}
	if c.UserID != "" {
		p[c.UserID] = true
	}
	return p
}
