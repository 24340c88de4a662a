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
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
)

// publishConfig is what kdsync publish's flags say.
type publishConfig struct {
	nats                                                       func() consumer.ConnectOptions
	prefix, file, action, user, dept, role, status, id, source string
	binary                                                     bool
	timeout                                                    time.Duration
}

// publishFlags declares kdsync publish's flags, every one also read from
// the environment.
func publishFlags() (*cmdFlags, *publishConfig) {
	var c publishConfig
	f := newFlags("kdsync publish")
	fs := f.FlagSet
	c.nats = natsFlags(fs)
	fs.StringVar(&c.prefix, "subject-prefix", "identity.employee", "subject prefix: <prefix>.<action>.<userId>")
	fs.StringVar(&c.file, "file", "", "a structured CloudEvent (JSON) to send as it is; - reads standard input")
	fs.StringVar(&c.action, "type", "", "action: hired, changed, disabled, enabled or deleted")
	fs.StringVar(&c.user, "user", "", "OrgID user id")
	fs.StringVar(&c.dept, "dept", "", "KooDrive department id")
	fs.StringVar(&c.role, "role", "", "role: 0, 1, 2, 3 or 5")
	fs.StringVar(&c.status, "status", "", "status: 0 enabled, 1 disabled")
	fs.StringVar(&c.id, "id", "", "event id (default: a new UUID)")
	fs.StringVar(&c.source, "source", "kdsync/publish", "event source")
	fs.BoolVar(&c.binary, "binary", false, "send in binary content mode (ce-* headers, data as body)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for the stream's acknowledgement")
	return f, &c
}

func cmdPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, c := publishFlags()
	f.SetOutput(stderr)
	if err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return invalid("kdsync publish", err)
	}
	connectOpts, prefix, file, action, user, dept, role, status, id, source, binary, timeout :=
		c.nats, &c.prefix, &c.file, &c.action, &c.user, &c.dept, &c.role, &c.status, &c.id, &c.source, &c.binary, &c.timeout
	msg, err := buildEvent(*file, *prefix, *action, *user, *dept, *role, *status, *id, *source, *binary)
	if err != nil {
		return err
	}
	js, closeNATS, err := connect(connectOpts())
	if err != nil {
		return err
	}
	defer closeNATS()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	dup := ""
	if ack.Duplicate {
		dup = " (duplicate: already in the stream)"
	}
	fmt.Fprintf(stdout, "published %s to %s as sequence %d%s\n", msg.Subject, ack.Stream, ack.Sequence, dup)
	return nil
}

// buildEvent makes the message to publish, from a file or from flags. It
// validates the event with the consumer's own decoder first, so that an
// operator learns of a mistake here rather than from a dead letter.
func buildEvent(file, prefix, action, user, dept, role, status, id, source string, binary bool) (*nats.Msg, error) {
	var body []byte
	hdr := nats.Header{}
	switch {
	case file != "":
		var err error
		if file == "-" {
			body, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		} else {
			body, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, err
		}
		var head struct {
			Type string `json:"type"`
			Data struct {
				UserID string `json:"userId"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &head); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		user = head.Data.UserID
		action = head.Type[min(len(head.Type), len(handlers.TypePrefix)):]
	default:
		if action == "" || user == "" {
			return nil, errors.New("give -type and -user (or -file)")
		}
		if id == "" {
			id = uuid.NewString()
		}
		data := map[string]any{"userId": user}
		if dept != "" {
			data["deptId"] = dept
		}
		for name, v := range map[string]string{"role": role, "status": status} {
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("-%s %q: want a number", name, v)
			}
			data[name] = n
		}
		now := time.Now().UTC().Format(time.RFC3339Nano)
		var err error
		if binary {
			hdr.Set("ce-specversion", "1.0")
			hdr.Set("ce-id", id)
			hdr.Set("ce-source", source)
			hdr.Set("ce-type", handlers.TypePrefix+action)
			hdr.Set("ce-subject", user)
			hdr.Set("ce-time", now)
			hdr.Set("content-type", "application/json")
			body, err = json.Marshal(data)
		} else {
			body, err = json.Marshal(map[string]any{
				"specversion": "1.0", "id": id, "source": source, "type": handlers.TypePrefix + action,
				"subject": user, "time": now, "datacontenttype": "application/json", "data": data,
			})
		}
		if err != nil {
			return nil, err
		}
	}
	subject := prefix + "." + action + "." + user
	ev, err := (handlers.Decoder{}).Decode(subject, hdr, body)
	if err != nil {
		return nil, fmt.Errorf("the event would be dead-lettered: %w", err)
	}
	// JetStream drops a re-publish of the same event (source and id).
	hdr.Set(jetstream.MsgIDHeader, ev.Key())
	return &nats.Msg{Subject: subject, Header: hdr, Data: body}, nil
}
