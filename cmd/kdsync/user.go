package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/provision"
	"github.com/kdsync/kdsync/reconcile"
	"github.com/kdsync/kdsync/usertrace"
)

const userUsage = `Usage: kdsync user [flags] <userId>

One user's story: each of the user's events in the identity stream
(identity.employee.*.<userId>) with its time, action and fields, and its
outcome (result, reason, calls, attempts, latency); the user's dead
letters and guard holds; the record (watermark) kdsync keeps; KooDrive's
current state (GET /users/<userId>, when the KooDrive flags are given);
the desired state (the events kdsync applied); and a verdict: in sync, or
which field drifts. -json for scripts.
`

const syncUsage = `Usage: kdsync sync [flags] <userId>

Provision on demand: put one user right now. kdsync sync reads the desired
state (the events kdsync applied), checks the user is in scope, reads
KooDrive, decides, and publishes the repair as an identity event into the
stream, where kdsync applies it in the user's order with every other event.
It waits for that event's outcome and reads KooDrive again: exit status 0
when KooDrive matches, 1 with the reason otherwise. -dry-run stops before
publishing.
`

// userConfig is what kdsync user's and kdsync sync's flags say.
type userConfig struct {
	nats    consumer.ConnectOptions
	api     kdapi.Config
	rate    float64
	trace   usertrace.Options
	user    string
	json    bool
	dryRun  bool
	wait    time.Duration
	timeout time.Duration
}

// streamFlags declares where kdsync keeps events, outcomes, dead letters,
// records and holds, as kdsync run names them.
func streamFlags(fs *flag.FlagSet, o *usertrace.Options) {
	streamName.bind(fs, &o.Stream)
	subjectPrefixName.bind(fs, &o.SubjectPrefix)
	outcomeStreamName.bind(fs, &o.OutcomeStream)
	outcomePrefixName.bind(fs, &o.OutcomePrefix)
	dlqStreamName.bind(fs, &o.DLQStream)
	dlqPrefixName.bind(fs, &o.DLQPrefix)
	stateBucketName.bind(fs, &o.StateBucket)
	guardBucketName.bind(fs, &o.GuardBucket)
}

// userFlags declares the flags of kdsync user or sync (name), its usage
// written to out; the returned function builds the configuration once
// they are parsed.
func userFlags(name string, out io.Writer) (*cmdFlags, func() (*userConfig, error)) {
	var c userConfig
	f := newFlags("kdsync " + name)
	fs := f.FlagSet
	conn := natsFlags(fs)
	api := apiFlags(fs)
	fs.Float64Var(&c.rate, "rate", 5, "KooDrive requests per second at most")
	streamFlags(fs, &c.trace)
	f.CommandLineOnly()
	setUsage(f, out, map[string]string{"user": userUsage, "sync": syncUsage}[name])
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "how long the whole command may take")
	if name == "user" {
		fs.IntVar(&c.trace.MaxEvents, "max-events", 200, "show the user's last N events")
	} else {
		fs.BoolVar(&c.dryRun, "dry-run", false, "stop before publishing the repair")
		fs.DurationVar(&c.wait, "wait", 30*time.Second, "how long to wait for the repair's outcome")
	}
	return f, func() (*userConfig, error) {
		c.nats = conn()
		var err error
		c.api, err = api(name == "sync")
		return &c, errors.Join(err, reconcile.CheckRate(c.rate))
	}
}

func parseUserFlags(name string, args []string, out io.Writer) (*userConfig, error) {
	f, config := userFlags(name, out)
	cmd := "kdsync " + name
	return parseOperand(f, args, func(user string) (*userConfig, error) {
		if err := noArgs(out, cmd, f.Args()); err != nil {
			return nil, err
		}
		if user == "" {
			fmt.Fprintf(out, "%s: which user? (%s <userId>)\n", cmd, cmd)
			return nil, errUsage
		}
		c, err := config()
		c.user = user
		return c, errors.Join(err, usertrace.CheckUser(user))
	})
}

// connect dials NATS and, when configured, builds the KooDrive client.
func (c *userConfig) connect() (js jetstream.JetStream, kd *kdapi.Client, closeNATS func(), err error) {
	if c.api.BaseURL != "" {
		if kd, _, err = reconcile.NewPacedClient(c.api, c.rate); err != nil {
			return nil, nil, nil, err
		}
	}
	if js, closeNATS, err = consumer.ConnectJetStream(c.nats); err != nil {
		return nil, nil, nil, err
	}
	return js, kd, closeNATS, nil
}

// userCommand is kdsync user or sync (name): it parses the flags, connects
// and has report tell the story or do the repair, within -timeout.
func userCommand(name string, report func(ctx context.Context, c *userConfig, js jetstream.JetStream, kd *kdapi.Client, stdout io.Writer) error) command {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		args, out := helpArgs(args, stdout, stderr)
		c, err := parseUserFlags(name, args, out)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		if name == "sync" && !c.json {
			fmt.Fprintf(stdout, "connect: NATS %s, KooDrive %s\n", c.nats.URLs, c.api.BaseURL)
		}
		js, kd, closeNATS, err := c.connect()
		if err != nil {
			return err
		}
		defer closeNATS()
		return report(ctx, c, js, kd, stdout)
	}
}

var (
	cmdUser = userCommand("user", func(ctx context.Context, c *userConfig, js jetstream.JetStream, kd *kdapi.Client, stdout io.Writer) error {
		o := c.trace
		o.JetStream = js
		if kd != nil {
			o.KooDrive = kd
		}
		return usertrace.Report(ctx, stdout, o, c.user, c.json)
	})
	cmdSync = userCommand("sync", func(ctx context.Context, c *userConfig, js jetstream.JetStream, kd *kdapi.Client, stdout io.Writer) error {
		o := provision.Options{
			JetStream: js, KooDrive: kd,
			Stream: c.trace.Stream, SubjectPrefix: c.trace.SubjectPrefix,
			OutcomeStream: c.trace.OutcomeStream, OutcomePrefix: c.trace.OutcomePrefix,
			StateBucket: c.trace.StateBucket, Protect: protected(c.api),
			Wait: c.wait, DryRun: c.dryRun,
		}
		return provision.SyncReport(ctx, stdout, o, c.user, c.json)
	})
)
