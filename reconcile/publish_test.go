package reconcile_test

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/reconcile"
)

func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, _, js := harness.NewJetStream(t)
	return js
}

func statusDrift(user string, seq uint64) reconcile.Drift {
	s := kdapi.StatusDisabled
	return reconcile.Drift{UserID: user, Kinds: []reconcile.Kind{reconcile.KindStatus},
		Desired: &reconcile.Desired{UserID: user, Status: &s, Seq: seq},
		Actual:  &reconcile.Actual{UserID: user, DeptID: "42", Role: 1}}
}

func publish(t *testing.T, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	ack, err := js.Publish(t.Context(), subject, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// TestPublishGuard: a repair is left out when the user's events moved on
// since the pass read its state, on a plain and on a partitioned stream.
func TestPublishGuard(t *testing.T) {
	t.Parallel()
	partitioned := &jetstream.SubjectTransformConfig{Source: "identity.employee.*.*",
		Destination: "identity.part.{{partition(4,2)}}.employee.{{wildcard(1)}}.{{wildcard(2)}}"}
	for name, tc := range map[string]struct {
		tr     *jetstream.SubjectTransformConfig
		direct bool
	}{
		"plain stream":                    {},
		"partitioned stream":              {tr: partitioned},
		"plain stream, direct gets":       {direct: true},
		"partitioned stream, direct gets": {tr: partitioned, direct: true},
	} {
		tr := tc.tr
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			js := jetStream(t)
			if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "IDENTITY", Subjects: []string{"identity.>"},
				SubjectTransform: tr, Duplicates: time.Minute, AllowDirect: tc.direct}); err != nil {
				t.Fatal(err)
			}
			// User 1: kdsync's record is at its last event. User 2: an
			// event arrived after the record was read. User 3 has no
			// record (a source file) and no event since the pass began;
			// user 4 has one since.
			s1 := publish(t, js, "identity.employee.hired.1")
			s2 := publish(t, js, "identity.employee.hired.2")
			publish(t, js, "identity.employee.hired.3")
			since := publish(t, js, "identity.employee.hired.99")
			publish(t, js, "identity.employee.changed.2")
			publish(t, js, "identity.employee.disabled.4")
			drifts := []reconcile.Drift{statusDrift("1", s1), statusDrift("2", s2), statusDrift("3", 0), statusDrift("4", 0)}
			if err := reconcile.Plan(drifts, reconcile.PlanOptions{RunID: "g"}); err != nil {
				t.Fatal(err)
			}
			sum, err := reconcile.Publish(t.Context(), js, drifts, reconcile.PublishOptions{Since: since})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Published != 2 || sum.Superseded != 2 || sum.ByAction[handlers.Changed] != 2 {
				t.Fatalf("summary %+v", sum)
			}
			for i, want := range []bool{true, false, true, false} {
				r := drifts[i].Repair
				if r.Published() != want || want == (r.NotPublished != "") {
					t.Errorf("user %s: published %v (%q), want %v", drifts[i].UserID, r.Published(), r.NotPublished, want)
				}
				if !want && !strings.HasPrefix(r.NotPublished, "superseded") {
					t.Errorf("user %s: %q", drifts[i].UserID, r.NotPublished)
				}
			}
			// The repairs are stored where the consumer reads them, with
			// their ids.
			st, err := js.Stream(t.Context(), "IDENTITY")
			if err != nil {
				t.Fatal(err)
			}
			m, err := st.GetMsg(t.Context(), drifts[0].Repair.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			if m.Header.Get(jetstream.MsgIDHeader) != handlers.EventKey(reconcile.DefaultEventSource, "reconcile:g:1") || !strings.HasSuffix(m.Subject, ".employee.changed.1") {
				t.Errorf("stored %s with id %q", m.Subject, m.Header.Get(jetstream.MsgIDHeader))
			}
			if tr != nil && !strings.HasPrefix(m.Subject, "identity.part.") {
				t.Errorf("stored as %s on a partitioned stream", m.Subject)
			}
		})
	}
}

// TestPublishAsOf: with a source file, a user with an event stored, or
// finished by kdsync, after the source was taken is not repaired.
func TestPublishAsOf(t *testing.T) {
	t.Parallel()
	js := jetStream(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "IDENTITY", Subjects: []string{"identity.>"}}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "KDSYNC_STATE"})
	if err != nil {
		t.Fatal(err)
	}
	asOf := time.Now().Add(-time.Hour)
	for user, at := range map[string]time.Time{"1": asOf.Add(-time.Minute), "2": asOf.Add(time.Minute)} {
		b, _ := json.Marshal(outcome.Record{Seq: 0, At: at})
		if _, err := kv.Put(t.Context(), outcome.KVKey(user), b); err != nil {
			t.Fatal(err)
		}
	}
	// User 4's last event is in the stream (stored now, after the
	// source), not applied yet.
	since := publish(t, js, "identity.employee.changed.4")
	drifts := []reconcile.Drift{statusDrift("1", 0), statusDrift("2", 0), statusDrift("3", 0), statusDrift("4", 0)}
	if err := reconcile.Plan(drifts, reconcile.PlanOptions{RunID: "a"}); err != nil {
		t.Fatal(err)
	}
	sum, err := reconcile.Publish(t.Context(), js, drifts, reconcile.PublishOptions{AsOf: asOf, State: kv, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Published != 2 || sum.Superseded != 2 || drifts[0].Repair.Sequence == 0 || drifts[2].Repair.Sequence == 0 {
		t.Fatalf("summary %+v", sum)
	}
	for _, i := range []int{1, 3} {
		if r := drifts[i].Repair; !strings.Contains(r.NotPublished, "after the source was taken") {
			t.Errorf("user %s: %q", drifts[i].UserID, r.NotPublished)
		}
	}
}

// TestRunRefusesTooManyRepairs: past -max-repairs or -max-disables nothing
// is published.
func TestRunRefusesTooManyRepairs(t *testing.T) {
	t.Parallel()
	js := jetStream(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "IDENTITY", Subjects: []string{"identity.>"}}); err != nil {
		t.Fatal(err)
	}
	kd := fakeList{"1": {UserID: "1", DeptID: "42", Role: 1}, "2": {UserID: "2", DeptID: "42", Role: 1}, "3": {UserID: "3", DeptID: "42", Role: 1}}
	for name, tc := range map[string]struct {
		maxRepairs, maxDisables int
		ok                      bool
	}{
		"too many disables": {maxRepairs: -1, maxDisables: 1},
		"too many repairs":  {maxRepairs: 2, maxDisables: -1},
		"within the limits": {maxRepairs: 3, maxDisables: 2, ok: true},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := reconcile.Run(t.Context(), reconcile.Options{
				Source: strings.NewReader("userId,deptId\n1,43\n"), Complete: true, KooDrive: kd, JetStream: js,
				Apply: true, MaxRepairs: tc.maxRepairs, MaxDisables: tc.maxDisables,
			})
			if res == nil || res.Repairs[handlers.Disabled] != 2 || res.Repairs[handlers.Changed] != 1 {
				t.Fatalf("result %+v, err %v", res, err)
			}
			if tc.ok {
				if err != nil || res.Publish.Published != 3 {
					t.Fatalf("err %v, publish %+v", err, res.Publish)
				}
				return
			}
			if !errors.Is(err, reconcile.ErrTooManyRepairs) || res.Applied || res.Publish != nil {
				t.Fatalf("err %v, applied %v", err, res.Applied)
			}
		})
	}
}

// fakeList is a KooDrive of a few users, in no particular order.
type fakeList map[string]reconcile.Actual

func (f fakeList) AllUsers(context.Context, kdapi.ListUsersOptions) iter.Seq2[*kdapi.User, error] {
	return func(yield func(*kdapi.User, error) bool) {
		for _, a := range f {
			u := &kdapi.User{UserID: kdapi.FlexString(a.UserID), DeptID: kdapi.FlexString(a.DeptID), Role: kdapi.FlexInt64(a.Role), Status: kdapi.FlexInt64(a.Status)}
			if !yield(u, nil) {
				return
			}
		}
	}
}

func (f fakeList) GetUser(_ context.Context, id string) (*kdapi.User, error) {
	a, ok := f[id]
	if !ok {
		return nil, &kdapi.APIError{HTTPStatus: 400, Code: "13000502", Class: kdapi.ClassNotFound}
	}
	return &kdapi.User{UserID: kdapi.FlexString(a.UserID), DeptID: kdapi.FlexString(a.DeptID), Role: kdapi.FlexInt64(a.Role), Status: kdapi.FlexInt64(a.Status)}, nil
}

// TestRunProtected: kdsync's own API user is never repaired; not listed, it
// is no stray either.
func TestRunProtected(t *testing.T) {
	t.Parallel()
	kd := fakeList{"1": {UserID: "1", DeptID: "42", Role: 1}, "9": {UserID: "9", DeptID: "42", Role: 2}}
	protect := map[string]bool{"9": true}
	res, err := reconcile.Run(t.Context(), reconcile.Options{
		Source: strings.NewReader("userId,deptId\n1,42\n"), Complete: true, KooDrive: kd, Protect: protect,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals.Drifted != 0 || res.Totals.Ignored != 1 {
		t.Fatalf("not listed: %+v", res.Totals)
	}
	res, err = reconcile.Run(t.Context(), reconcile.Options{
		Source: strings.NewReader("userId,deptId,status\n1,42,0\n9,42,1\n"), Complete: true, KooDrive: kd, Protect: protect,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals.Drifted != 1 || res.Unrepairable != 1 || !strings.HasPrefix(res.Drifts[0].Repair.Skip, "protected") {
		t.Fatalf("listed: %+v %+v", res.Totals, res.Drifts)
	}
}
