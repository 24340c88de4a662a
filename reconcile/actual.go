package reconcile

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/kdsync/kdsync/kdapi"
)

// Actual is a user as KooDrive has it.
type Actual struct {
	UserID string `json:"userId"`
	DeptID string `json:"deptId"`
	Role   int    `json:"role"`
	Status int    `json:"status"`
}

func actualOf(u *kdapi.User) Actual {
	return Actual{UserID: string(u.UserID), DeptID: string(u.DeptID), Role: int(u.Role), Status: int(u.Status)}
}

// DefaultRate is the default request rate to KooDrive, per second.
const DefaultRate = 20

// Transport is an http.RoundTripper that waits for a rate limiter before
// each request and counts the requests it lets through. Give it to the
// KooDrive client with kdapi.WithHTTPClient: the client wraps it in its
// authentication transport, so every request, a bearer token's retry
// after a 401 included, waits its turn.
type Transport struct {
	next    http.RoundTripper
	limiter *rate.Limiter
	n       atomic.Int64
}

// CheckRate reports a -rate of the tools reading KooDrive (kdsync
// reconcile, user, sync) that a Transport cannot keep to.
func CheckRate(perSecond float64) error {
	if perSecond <= 0 || perSecond > 10000 {
		return fmt.Errorf("-rate %g: want more than 0 and at most 10000", perSecond)
	}
	return nil
}

// NewPacedClient builds the KooDrive client of the tools (reconcile,
// user, sync): configured as the service's, its requests paced to
// perSecond and counted by the returned transport.
func NewPacedClient(c kdapi.Config, perSecond float64) (*kdapi.Client, *Transport, error) {
	switch err := c.Check(); {
	case errors.Is(err, kdapi.ErrAuthBoth):
		return nil, nil, errors.New("choose one KooDrive authentication: app (-app-id, -app-secret, -api-user-id) or a token (-api-token)")
	case err != nil:
		return nil, nil, errors.New("KooDrive authentication is required: -app-id, -app-secret and -api-user-id, or -api-token (or their KDSYNC_ variables)")
	}
	t, err := NewTransport(nil, perSecond)
	if err != nil {
		return nil, nil, err
	}
	kd, err := kdapi.NewClient(append(c.Options(), kdapi.WithHTTPClient(&http.Client{Transport: t}))...)
	return kd, t, err
}

// NewTransport limits next (nil: a fresh keep-alive transport) to perSecond
// requests per second with no burst beyond one.
func NewTransport(next http.RoundTripper, perSecond float64) (*Transport, error) {
	if perSecond <= 0 || perSecond > 10000 {
		return nil, fmt.Errorf("reconcile: rate %g: want more than 0 and at most 10000 requests per second", perSecond)
	}
	if next == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		next = t
	}
	return &Transport{next: next, limiter: rate.NewLimiter(rate.Limit(perSecond), 1)}, nil
}

// RoundTrip waits for the limiter, then sends req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.limiter.Wait(req.Context()); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	t.n.Add(1)
	return t.next.RoundTrip(req)
}

// Requests is the number of requests sent so far.
func (t *Transport) Requests() int64 { return t.n.Load() }

// Rate is the limit, in requests per second.
func (t *Transport) Rate() float64 { return float64(t.limiter.Limit()) }

// Lister walks GET /userList; *kdapi.Client is one.
type Lister interface {
	AllUsers(ctx context.Context, opts kdapi.ListUsersOptions) iter.Seq2[*kdapi.User, error]
}

// Getter reads one user; *kdapi.Client is one.
type Getter interface {
	GetUser(ctx context.Context, userID string) (*kdapi.User, error)
}

// readAttempts bounds the tries of one read that fails transiently
// (timeouts, 429, 5xx).
const readAttempts = 5

// retryBase is the first wait after a transient read failure; it doubles
// each try.
const retryBase = 500 * time.Millisecond

// retryWait is how long to wait before try n (1-based) after err, base
// doubling each try.
func retryWait(n int, err error, base time.Duration) time.Duration {
	d := time.Duration(1<<min(n-1, 5)) * base
	return max(d, min(kdapi.RetryAfterOf(err), time.Minute))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ListUsers reads every KooDrive user through GET /userList, all pages,
// 100 users a page. A page that fails transiently is tried again (five
// tries, waiting at least Retry-After) from where the walk stopped; any
// other failure ends the read: a partial list would show people as
// missing. progress, when not nil, is called with the number of users read
// after each one.
//
// A user listed twice (the list shifted under the walk because a user was
// created or removed meanwhile) is kept once. A user the shift skipped
// shows as missing; its repair is a hire, which kdsync applies as an
// upsert, so no harm follows, and the next pass sees it.
func ListUsers(ctx context.Context, l Lister, progress func(n int)) (map[string]Actual, error) {
	return listUsers(ctx, l, progress, retryBase)
}

func listUsers(ctx context.Context, l Lister, progress func(n int), base time.Duration) (map[string]Actual, error) {
	out := make(map[string]Actual)
	read, tries := 0, 0
	for {
		var failed error
		for u, err := range l.AllUsers(ctx, kdapi.ListUsersOptions{Offset: read, Limit: 100}) {
			if err != nil {
				failed = err
				break
			}
			tries = 0
			read++
			a := actualOf(u)
			if a.UserID == "" {
				continue
			}
			out[a.UserID] = a
			if progress != nil {
				progress(read)
			}
		}
		if failed == nil {
			return out, nil
		}
		tries++
		if ctx.Err() != nil || !errors.Is(failed, kdapi.ErrRetryable) || tries >= readAttempts {
			return nil, fmt.Errorf("reconcile: list KooDrive users (after %d read): %w", read, failed)
		}
		if err := sleep(ctx, retryWait(tries, failed, base)); err != nil {
			return nil, fmt.Errorf("reconcile: list KooDrive users (after %d read): %w", read, failed)
		}
	}
}

// GetUsers reads the given users one GET /users/{userId} each, with
// workers requests under way at once (the rate limit still applies). A
// user KooDrive does not know is absent from the result. Transient
// failures are tried again as in ListUsers; any other failure ends the
// read. progress, when not nil, is called with the number of users read.
func GetUsers(ctx context.Context, g Getter, ids []string, workers int, progress func(n int)) (map[string]Actual, error) {
	return getUsers(ctx, g, ids, workers, progress, retryBase)
}

func getUsers(ctx context.Context, g Getter, ids []string, workers int, progress func(n int), base time.Duration) (map[string]Actual, error) {
	workers = max(1, min(workers, len(ids)))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		out  = make(map[string]Actual, len(ids))
		done int
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				a, ok, err := getUser(ctx, g, ids[i], base)
				if err != nil {
					cancel(fmt.Errorf("reconcile: get KooDrive user %s: %w", ids[i], err))
					return
				}
				mu.Lock()
				if ok {
					out[a.UserID] = a
				}
				done++
				n := done
				mu.Unlock()
				if progress != nil {
					progress(n)
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

func getUser(ctx context.Context, g Getter, id string, base time.Duration) (Actual, bool, error) {
	for n := 1; ; n++ {
		u, err := g.GetUser(ctx, id)
		switch {
		case err == nil:
			a := actualOf(u)
			if a.UserID == "" {
				a.UserID = id
			}
			if a.UserID != id {
				return Actual{}, false, fmt.Errorf("KooDrive answered with user %s", a.UserID)
			}
			return a, true, nil
		case errors.Is(err, kdapi.ErrNotFound):
			return Actual{}, false, nil
		case ctx.Err() != nil || !errors.Is(err, kdapi.ErrRetryable) || n >= readAttempts:
			return Actual{}, false, err
		}
		if err := sleep(ctx, retryWait(n, err, base)); err != nil {
			return Actual{}, false, err
		}
	}
}

// deptText is the text of a department id as KooDrive lists it.
func deptText(d int64) string { return strconv.FormatInt(d, 10) }
