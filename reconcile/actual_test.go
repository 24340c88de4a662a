package reconcile

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kdsync/kdsync/kdapi"
)

// fakeKooDrive serves users from memory; fail returns an error for the
// page at an offset or the user, once per call counted in calls.
type fakeKooDrive struct {
	users []kdapi.User
	mu    sync.Mutex
	fail  func(offset int, user string, call int) error
	calls int
}

func (f *fakeKooDrive) AllUsers(ctx context.Context, o kdapi.ListUsersOptions) iter.Seq2[*kdapi.User, error] {
	return func(yield func(*kdapi.User, error) bool) {
		for off := o.Offset; ; off += o.Limit {
			f.mu.Lock()
			f.calls++
			n := f.calls
			f.mu.Unlock()
			if f.fail != nil {
				if err := f.fail(off, "", n); err != nil {
					yield(nil, err)
					return
				}
			}
			if off >= len(f.users) {
				return
			}
			for i := off; i < min(off+o.Limit, len(f.users)); i++ {
				if !yield(&f.users[i], nil) {
					return
				}
			}
		}
	}
}

func (f *fakeKooDrive) GetUser(ctx context.Context, id string) (*kdapi.User, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(-1, id, n); err != nil {
			return nil, err
		}
	}
	for i := range f.users {
		if string(f.users[i].UserID) == id {
			u := f.users[i]
			return &u, nil
		}
	}
	return nil, &kdapi.APIError{HTTPStatus: 400, Code: "13000502", Class: kdapi.ClassNotFound}
}

func users(n int) []kdapi.User {
	out := make([]kdapi.User, n)
	for i := range out {
		out[i] = kdapi.User{UserID: kdapi.FlexString(strconv.Itoa(1000 + i)), DeptID: "42", Role: 1, Status: kdapi.FlexInt64(i % 2)}
	}
	return out
}

var (
	errBusy   = &kdapi.APIError{HTTPStatus: 503, Class: kdapi.ClassRetryable, RetryAfter: time.Millisecond}
	errDenied = &kdapi.APIError{HTTPStatus: 401, Class: kdapi.ClassAuth}
)

func TestListUsers(t *testing.T) {
	t.Parallel()
	t.Run("every page", func(t *testing.T) {
		t.Parallel()
		f := &fakeKooDrive{users: users(250)}
		last := 0
		got, err := listUsers(t.Context(), f, func(n int) { last = n }, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 250 || last != 250 {
			t.Fatalf("%d users, progress %d", len(got), last)
		}
		if a := got["1001"]; a != (Actual{UserID: "1001", DeptID: "42", Role: 1, Status: 1}) {
			t.Errorf("user 1001 = %+v", a)
		}
	})
	t.Run("a transient failure resumes where the walk stopped", func(t *testing.T) {
		t.Parallel()
		var offsets []int
		f := &fakeKooDrive{users: users(250)}
		f.fail = func(off int, _ string, call int) error {
			offsets = append(offsets, off)
			if off == 100 && call <= 3 {
				return errBusy
			}
			return nil
		}
		got, err := listUsers(t.Context(), f, nil, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 250 {
			t.Fatalf("%d users", len(got))
		}
		if want := fmt.Sprint([]int{0, 100, 100, 100, 200, 300}); fmt.Sprint(offsets) != want {
			t.Errorf("pages asked for at offsets %v, want %s", offsets, want)
		}
	})
	t.Run("a page that keeps failing ends the read", func(t *testing.T) {
		t.Parallel()
		f := &fakeKooDrive{users: users(250), fail: func(off int, _ string, _ int) error {
			if off == 200 {
				return errBusy
			}
			return nil
		}}
		got, err := listUsers(t.Context(), f, nil, time.Millisecond)
		if !errors.Is(err, kdapi.ErrRetryable) || got != nil {
			t.Fatalf("got %d users, err %v", len(got), err)
		}
		if f.calls != 2+readAttempts {
			t.Errorf("%d calls, want %d", f.calls, 2+readAttempts)
		}
	})
	t.Run("a refusal ends the read at once", func(t *testing.T) {
		t.Parallel()
		f := &fakeKooDrive{users: users(250), fail: func(off int, _ string, _ int) error {
			if off == 100 {
				return errDenied
			}
			return nil
		}}
		if _, err := listUsers(t.Context(), f, nil, time.Millisecond); !errors.Is(err, kdapi.ErrAuth) || f.calls != 2 {
			t.Fatalf("err %v after %d calls", err, f.calls)
		}
	})
}

func TestGetUsers(t *testing.T) {
	t.Parallel()
	f := &fakeKooDrive{users: users(10)}
	busy := map[string]int{}
	f.fail = func(_ int, id string, _ int) error {
		if id == "1003" && busy[id] < 2 {
			busy[id]++
			return errBusy
		}
		return nil
	}
	var mu sync.Mutex
	last := 0
	got, err := getUsers(t.Context(), f, []string{"1001", "1003", "5555", "1009"}, 1, func(n int) {
		mu.Lock()
		last = max(last, n)
		mu.Unlock()
	}, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["1003"].UserID != "1003" || last != 4 {
		t.Fatalf("got %v, progress %d", got, last)
	}
	if _, ok := got["5555"]; ok {
		t.Error("a user KooDrive does not know was read as present")
	}

	f.fail = func(_ int, id string, _ int) error {
		if id == "1005" {
			return errDenied
		}
		return nil
	}
	ids := []string{"1001", "1002", "1003", "1004", "1005", "1006", "1007"}
	if _, err := getUsers(t.Context(), f, ids, 3, nil, time.Millisecond); !errors.Is(err, kdapi.ErrAuth) {
		t.Fatalf("err %v, want the refusal", err)
	}
}

func TestTransport(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(srv.Close)
	tr, err := NewTransport(nil, 50)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr}
	start := time.Now()
	for range 11 {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	// 11 requests at 50/s: the first at once, then one every 20ms.
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Errorf("11 requests at 50/s took %s, want at least 200ms", d)
	}
	if tr.Requests() != 11 || tr.Rate() != 50 {
		t.Errorf("requests %d rate %g", tr.Requests(), tr.Rate())
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if _, err := hc.Do(req); err == nil {
		t.Error("a cancelled request went through")
	}
	if tr.Requests() != 11 {
		t.Errorf("a refused request was counted: %d", tr.Requests())
	}
	for _, bad := range []float64{0, -1, 20000} {
		if _, err := NewTransport(nil, bad); err == nil {
			t.Errorf("rate %g accepted", bad)
		}
	}
}

func TestRetryWait(t *testing.T) {
	t.Parallel()
	busy := &kdapi.APIError{HTTPStatus: 429, Class: kdapi.ClassRetryable, RetryAfter: 3 * time.Second}
	for _, tc := range []struct {
		n    int
		err  error
		want time.Duration
	}{
		{1, errBusy, 500 * time.Millisecond},
		{3, errBusy, 2 * time.Second},
		{9, errBusy, 16 * time.Second},
		{1, busy, 3 * time.Second}, // Retry-After wins when longer
		{1, &kdapi.APIError{Class: kdapi.ClassRetryable, RetryAfter: time.Hour}, time.Minute},
	} {
		if got := retryWait(tc.n, tc.err, retryBase); got != tc.want {
			t.Errorf("retryWait(%d, %v) = %s, want %s", tc.n, tc.err, got, tc.want)
		}
	}
}
