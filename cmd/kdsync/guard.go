package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/dlq"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/outcome"
)

const guardUsage = `Usage: kdsync guard status|release|reject [flags]

  status                      the held deprovisioning events and the window's count
  release -seq N,... | -all   apply the held events, in order
  reject  -seq N,... | -all   do not apply them: each gets a skipped outcome (guard_rejected)

Held events, and the later events of their users, are parked in the
stream KDSYNC_PARKED, out of kdsync's ack window: status counts them.

A shadow instance (kdsync run -shadow) holds in its own bucket,
KDSYNC_SHADOW_GUARD, and parks in KDSYNC_SHADOW_PARKED: add -shadow to
reach them. Its decisions change nothing in KooDrive either way.
`

// guardConfig is what kdsync guard's flags say.
type guardConfig struct {
	nats consumer.ConnectOptions
	cmd  guard.Command
}

// guardFlags declares kdsync guard verb's flags, its usage written to
// out; the returned function builds the configuration once they are
// parsed.
func guardFlags(verb string, out io.Writer) (f *cmdFlags, config func() (*guardConfig, error)) {
	c := guardConfig{cmd: guard.Command{Verb: verb}}
	g := &c.cmd
	f = newFlags("kdsync guard")
	fs := f.FlagSet
	setUsage(f, out, guardUsage)
	conn := natsFlags(fs)
	guardBucketName.bind(fs, &g.Status.Bucket)
	limit := fs.String("deprovision-limit", "", "the limit kdsync runs with, e.g. 50/10m (status shows the window's count against it)")
	parkStreamName.bind(fs, &g.Status.ParkStream)
	f.CommandLineOnly()
	fs.BoolVar(&g.Status.JSON, "json", false, "status: print JSON")
	seqList := fs.String("seq", "", "release, reject: stream sequences of held events, e.g. 1041,1045-1050 (see kdsync guard status)")
	fs.BoolVar(&g.All, "all", false, "release, reject: every held event pending a decision")
	fs.StringVar(&g.By, "by", os.Getenv("USER"), "release, reject: who decides, recorded with the decision")
	shadow := fs.Bool("shadow", false, "the shadow instance's guard: bucket "+outcome.ShadowGuardBucket+" unless -guard-bucket (or KDSYNC_GUARD_BUCKET) names another, as kdsync run -shadow")

	return f, func() (*guardConfig, error) {
		if err := noArgs(out, "kdsync guard "+verb, f.Args()); err != nil {
			return nil, err
		}
		c.nats = conn()
		if *shadow && !f.IsSet("guard-bucket") {
			g.Status.Bucket = outcome.ShadowGuardBucket
		}
		if *shadow && !f.IsSet("park-stream") {
			g.Status.ParkStream = outcome.ShadowParkStream
		}
		g.Status.ParkKey = func(h guard.Hold) string {
			if h.Subject != "" {
				return consumer.ParkToken(h.Subject)
			}
			return outcome.KVKey(h.UserID)
		}
		var limitErr, seqErr, cmdErr error
		g.Status.Limit, limitErr = guard.ParseLimit(*limit)
		if g.Seqs, seqErr = dlq.ParseSeqs(*seqList); seqErr == nil {
			cmdErr = g.Validate()
		}
		return &c, errors.Join(limitErr, seqErr, cmdErr)
	}
}

func cmdGuard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, guardUsage)
		return errUsage
	}
	verb := args[0]
	switch {
	case isHelp(verb):
		fs, _ := guardFlags(verb, stdout)
		fs.Usage()
		return nil
	case !slices.Contains(guard.Verbs, verb):
		fmt.Fprintf(stderr, "kdsync guard: unknown command %q\n\n%s", verb, guardUsage)
		return errUsage
	}
	f, config := guardFlags(verb, stderr)
	c, err := parseConfig(f, args[1:], config)
	if err != nil {
		return err
	}
	js, closeNATS, err := consumer.ConnectJetStream(c.nats)
	if err != nil {
		return err
	}
	defer closeNATS()
	return c.cmd.Run(ctx, stdout, js)
}
