package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
)

// publishConfig is what kdsync publish's flags say.
type publishConfig struct {
	nats    func() consumer.ConnectOptions
	prefix  string
	file    string
	event   handlers.Draft
	timeout time.Duration
}

// publishFlags declares kdsync publish's flags, every one also read from
// the environment.
func publishFlags() (*cmdFlags, *publishConfig) {
	var c publishConfig
	f := newFlags("kdsync publish")
	fs := f.FlagSet
	c.nats = natsFlags(fs)
	d := &c.event
	subjectPrefixName.bind(fs, &c.prefix)
	fs.StringVar(&c.file, "file", "", "a structured CloudEvent (JSON) to send as it is; - reads standard input")
	fs.StringVar((*string)(&d.Action), "type", "", "action: hired, changed, disabled, enabled or deleted")
	fs.StringVar(&d.UserID, "user", "", "OrgID user id")
	fs.StringVar(&d.DeptID, "dept", "", "KooDrive department id")
	fs.StringVar(&d.Role, "role", "", "role: 0, 1, 2, 3 or 5")
	fs.StringVar(&d.Status, "status", "", "status: 0 enabled, 1 disabled")
	fs.StringVar(&d.ID, "id", "", "event id (default: a new UUID)")
	fs.StringVar(&d.Source, "source", "kdsync/publish", "event source")
	fs.BoolVar(&d.Binary, "binary", false, "send in binary content mode (ce-* headers, data as body)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for the stream's acknowledgement")
	return f, &c
}

func cmdPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, c := publishFlags()
	f.SetOutput(stderr)
	m, err := parseConfig(f, args, c.message)
	if err != nil {
		return err
	}
	js, closeNATS, err := consumer.ConnectJetStream(c.nats())
	if err != nil {
		return err
	}
	defer closeNATS()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	msg := &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Body}
	// JetStream drops a re-publish of the same event (source and id).
	msg.Header.Set(jetstream.MsgIDHeader, m.Event.Key())
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

// message builds the event from the file or the flags, checked as the
// consumer will decode it.
func (c *publishConfig) message() (*handlers.Message, error) {
	if c.file == "" {
		if c.event.Action == "" || c.event.UserID == "" {
			return nil, errors.New("give -type and -user (or -file)")
		}
		return c.event.Encode(c.prefix)
	}
	body, err := readInput(c.file)
	if err != nil {
		return nil, err
	}
	m, err := handlers.MessageOf(c.prefix, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.file, err)
	}
	return m, nil
}
