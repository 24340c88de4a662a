package usertrace_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/usertrace"
)

// BenchmarkTrace reads one user's story (5 events and their outcomes)
// from an outcome stream holding 20,000 outcomes of other users stored
// after them: with the user token in the subjects (contract v1.1) the
// outcomes are a subject filter; without it (before v1.1) they are a scan
// from the user's first event.
//
//	go test -run '^$' -bench Trace -benchtime 20x ./usertrace/
func BenchmarkTrace(b *testing.B) {
	for _, form := range []string{"v1.1 subjects", "v1.0 subjects"} {
		b.Run(form, func(b *testing.B) {
			old := form == "v1.0 subjects"
			_, _, js := harness.NewJetStream(b)
			ctx := b.Context()
			for name, subj := range map[string]string{"IDENTITY": "identity.>", "KDSYNC_DLQ": "kdsync.dlq.>", "KDSYNC_OUTCOMES": "kdsync.outcome.>"} {
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
					b.Fatal(err)
				}
			}
			outcome := func(user string, seq uint64) {
				o, err := json.Marshal(outcome.Outcome{EventID: "e", UserID: user, Action: handlers.Changed, Result: outcome.Applied,
					Attempts: 1, Stream: "IDENTITY", Sequence: seq, Time: time.Now()})
				if err != nil {
					b.Fatal(err)
				}
				subj := outcome.Subject("kdsync.outcome", outcome.Applied, handlers.Changed, user)
				if old {
					subj = "kdsync.outcome.applied.changed"
				}
				if _, err := js.PublishAsync(subj, o); err != nil {
					b.Fatal(err)
				}
			}
			const user = "42"
			for i := range 5 {
				body := `{"specversion":"1.0","id":"b-` + strconv.Itoa(i) + `","source":"t","type":"employee.changed","data":{"userId":"42","role":1}}`
				ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "identity.employee.changed." + user, Data: []byte(body)})
				if err != nil {
					b.Fatal(err)
				}
				outcome(user, ack.Sequence)
			}
			for i := range 20000 {
				outcome(strconv.Itoa(100000+i), uint64(1000+i))
				if i%1000 == 999 {
					<-js.PublishAsyncComplete()
				}
			}
			<-js.PublishAsyncComplete()
			tr, err := usertrace.New(usertrace.Options{JetStream: js})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				tl, err := tr.Trace(ctx, user)
				if err != nil {
					b.Fatal(err)
				}
				if len(tl.Events) != 5 || tl.Events[4].Outcome == nil {
					b.Fatalf("%d events, last outcome %v", len(tl.Events), tl.Events[4].Outcome)
				}
			}
		})
	}
}
