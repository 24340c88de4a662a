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
	nats   consumer.ConnectOptions
	status guard.StatusOptions // Bucket for every verb
	seqs   []uint64
	all    bool
	by     string
}

// guardFlags declares kdsync guard's flags: on env those also read from
// the environment, on fs all of them, its usage written to out. The
// returned function builds the configuration once both are parsed.
func guardFlags(out io.Writer) (f *cmdFlags, config func() (*guardConfig, error)) {
	var c guardConfig
	f = newFlags("kdsync guard")
	fs := f.FlagSet
	setUsage(f, out, guardUsage)
	conn := natsFlags(fs)
	guardBucketName.bind(fs, &c.status.Bucket)
	limit := fs.String("deprovision-limit", "", "the limit kdsync runs with, e.g. 50/10m (status shows the window's count against it)")
	parkStreamName.bind(fs, &c.status.ParkStream)
	f.CommandLineOnly()
	fs.BoolVar(&c.status.JSON, "json", false, "status: print JSON")
	seqList := fs.String("seq", "", "release, reject: stream sequences of held events, e.g. 1041,1045-1050 (see kdsync guard status)")
	fs.BoolVar(&c.all, "all", false, "release, reject: every held event pending a decision")
	fs.StringVar(&c.by, "by", os.Getenv("USER"), "release, reject: who decides, recorded with the decision")
	shadow := fs.Bool("shadow", false, "the shadow instance's guard: bucket "+outcome.ShadowGuardBucket+" unless -guard-bucket (or KDSYNC_GUARD_BUCKET) names another, as kdsync run -shadow")

	return f, func() (*guardConfig, error) {
		c.nats = conn()
		var errs []error
		var err error
		if c.status.Limit, err = guard.ParseLimit(*limit); err != nil {
			errs = append(errs, err)
		}
		if *shadow && !f.IsSet("guard-bucket") {
			c.status.Bucket = outcome.ShadowGuardBucket
		}
		if *shadow && !f.IsSet("park-stream") {
			c.status.ParkStream = outcome.ShadowParkStream
		}
		if c.seqs, err = dlq.ParseSeqs(*seqList); err != nil {
			errs = append(errs, err)
		}
		return &c, errors.Join(errs...)
	}
}

// parseGuardFlags reads the flags of kdsync guard verb from args and the
// environment.
func parseGuardFlags(verb string, args []string, stderr io.Writer) (*guardConfig, error) {
	f, config := guardFlags(stderr)
	c, err := parseConfig(f, args, func() (*guardConfig, error) {
		if f.NArg() > 0 {
			fmt.Fprintf(stderr, "kdsync guard %s: unexpected argument %q (see kdsync guard -h)\n", verb, f.Arg(0))
			return nil, errUsage
		}
		return config()
	})
	if err != nil {
		return nil, err
	}
	switch verb {
	case "release", "reject":
		if (len(c.seqs) == 0) == !c.all {
			return nil, errors.New("name the held events with -seq, or give -all (see kdsync guard status)")
		}
	default:
		if len(c.seqs) > 0 || c.all {
			return nil, fmt.Errorf("-seq and -all go with release and reject, not %s", verb)
		}
	}
	return c, nil
}

func cmdGuard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, guardUsage)
		return errUsage
	}
	verb := args[0]
	switch {
	case isHelp(verb):
		fs, _ := guardFlags(stdout)
		fs.Usage()
		return nil
	case !slices.Contains([]string{"status", "release", "reject"}, verb):
		fmt.Fprintf(stderr, "kdsync guard: unknown command %q\n\n%s", verb, guardUsage)
		return errUsage
	}
	c, err := parseGuardFlags(verb, args[1:], stderr)
	if err != nil {
		return err
	}
	js, closeNATS, err := connect(c.nats)
	if err != nil {
		return err
	}
	defer closeNATS()
	st, err := guard.Open(ctx, js, c.status.Bucket, 1, false)
	if err != nil {
		return fmt.Errorf("%w (is kdsync running with KDSYNC_DEPROVISION_LIMIT? a shadow instance's guard needs -shadow)", err)
	}
	if verb == "status" {
		c.status.ParkKey = func(h guard.Hold) string {
			if h.Subject != "" {
				return consumer.ParkToken(h.Subject)
			}
			return outcome.KVKey(h.UserID)
		}
		return guard.PrintStatus(ctx, stdout, js, st, c.status)
	}
	seqs := c.seqs
	if c.all {
		seqs = nil
	}
	return guard.DecideReport(ctx, stdout, st, seqs, guard.Decision(verb), c.by)
}
