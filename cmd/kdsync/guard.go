package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/guard"
)

const guardUsage = `Usage: kdsync guard status|release|reject [flags]

  status              the held deprovisioning events and the window's count
  release -seq N,... | -all   apply the held events, in order
  reject  -seq N,... | -all   do not apply them: each gets a skipped outcome (guard_rejected)
`

func cmdGuard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, guardUsage)
		return errUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("kdsync guard "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var co consumer.ConnectOptions
	fs.StringVar(&co.URLs, "nats-url", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated")
	fs.StringVar(&co.CredsFile, "nats-creds", "", "NATS credentials file")
	bucket := fs.String("guard-bucket", "KDSYNC_GUARD", "the guard's KV bucket")
	limit := fs.String("deprovision-limit", "", "the limit kdsync runs with, e.g. 50/10m (for status)")
	asJSON := fs.Bool("json", false, "print JSON")
	seqList := fs.String("seq", "", "stream sequences of held events, comma-separated")
	all := fs.Bool("all", false, "every pending held event")
	by := fs.String("by", os.Getenv("USER"), "who decides, recorded with the decision")
	if err := ff.Parse(fs, args[1:], ff.WithEnvVarPrefix("KDSYNC")); err != nil {
		return err
	}
	if (verb == "release" || verb == "reject") && (*seqList == "") == !*all {
		return errors.New("name the held events with -seq, or give -all (see kdsync guard status)")
	}
	nc, err := consumer.Connect(co, nil, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := guard.Open(ctx, js, *bucket, 1, false)
	if err != nil {
		return fmt.Errorf("%w (is kdsync running with KDSYNC_DEPROVISION_LIMIT?)", err)
	}
	switch verb {
	case "status":
		held, err := st.Held(ctx)
		if err != nil {
			return err
		}
		l, err := guard.ParseLimit(*limit)
		if err != nil {
			return err
		}
		counted := -1
		if l.N > 0 {
			if counted, err = st.Counted(ctx, l); err != nil {
				return err
			}
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(map[string]any{"held": held, "counted": counted, "limit": l.String()})
		}
		if counted >= 0 {
			fmt.Fprintf(stdout, "window: %d of %s\n", counted, l)
		}
		pending := 0
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tHELD SINCE\tACTION\tUSER\tEVENT ID\tDECISION")
		for _, h := range held {
			d := string(h.Decision)
			if d == "" {
				d, pending = "pending", pending+1
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", h.Seq, h.Since.Format("2006-01-02T15:04:05Z"), h.Action, h.UserID, h.EventID, d)
		}
		_ = tw.Flush()
		fmt.Fprintf(stdout, "%d held, %d pending a decision\n", len(held), pending)
		return nil
	case "release", "reject":
		var seqs []uint64
		for _, s := range splitList(*seqList) {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("-seq %q: want stream sequences", s)
			}
			seqs = append(seqs, n)
		}
		done, err := st.Decide(ctx, seqs, guard.Decision(verb), *by)
		past := map[string]string{"release": "released", "reject": "rejected"}[verb]
		for _, h := range done {
			fmt.Fprintf(stdout, "%s %d (%s %s)\n", past, h.Seq, h.Action, h.UserID)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d held events %s; kdsync acts on them within seconds\n", len(done), past)
		return nil
	}
	fmt.Fprint(stderr, guardUsage)
	return errUsage
}
