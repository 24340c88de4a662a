package ingress

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/kdsync/kdsync/kdapi"
)

// credential is how a request authenticated.
type credential int

const (
	credNone credential = iota
	credBearer
	credSignature
)

// Authentication failures, as labelled in kdsync_ingress_auth_failures_total.
const (
	authMissing      = "missing"
	authBadToken     = "bad_token"
	authBadSignature = "bad_signature"
	authBadTimestamp = "bad_timestamp"
	authReplayed     = "replayed"
)

var authReasons = []string{authMissing, authBadToken, authBadSignature, authBadTimestamp, authReplayed}

// The Standard Webhooks headers.
const (
	hdrWebhookID        = "Webhook-Id"
	hdrWebhookTimestamp = "Webhook-Timestamp"
	hdrWebhookSignature = "Webhook-Signature"
)

// authenticate decides, from the headers alone, how the request
// authenticates. A bearer token is checked here; a signature needs the
// body and is checked by verifySignature. A request that offers a
// credential must pass with it: a wrong token is not retried as a
// signature.
func (h *Handler) authenticate(header http.Header) (credential, *problem) {
	if auth := header.Get("Authorization"); auth != "" && len(h.tokens) > 0 {
		scheme, token, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || !h.tokenOK(strings.TrimSpace(token)) {
			return credNone, h.unauthorized(authBadToken, "the bearer token is not one this ingress accepts")
		}
		return credBearer, nil
	}
	if header.Get(hdrWebhookSignature) != "" && len(h.hooks) > 0 {
		return credSignature, nil
	}
	if h.opts.AllowUnauthenticated {
		return credNone, nil
	}
	var want []string
	if len(h.tokens) > 0 {
		want = append(want, "Authorization: Bearer <token>")
	}
	if len(h.hooks) > 0 {
		want = append(want, "a Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature)")
	}
	return credNone, h.unauthorized(authMissing, "credentials required: "+strings.Join(want, ", or "))
}

// tokenOK reports whether token is one of the accepted ones (in
// constant time).
func (h *Handler) tokenOK(token string) bool { return h.tokens.Match(token) }

// newWebhook reads a whsec_<base64> secret.
func newWebhook(s kdapi.Secret) (*standardwebhooks.Webhook, error) {
	raw := s.Reveal()
	if !strings.HasPrefix(raw, "whsec_") {
		return nil, errors.New("want the whsec_<base64> form")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(raw, "whsec_"))
	if err != nil {
		return nil, errors.New("the part after whsec_ is not standard base64")
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("the key is %d bytes; want at least 16 (the spec suggests 24 to 64)", len(key))
	}
	return standardwebhooks.NewWebhookRaw(key)
}

// claim is a webhook id held while its request is served.
type claim struct {
	id  string
	gen uint64
}

// verifySignature checks a Standard Webhooks signature against every
// secret, then the timestamp against the tolerance, then claims the
// webhook id so that the same signed request is not taken twice.
func (h *Handler) verifySignature(header http.Header, body []byte) (*claim, *problem) {
	id, ts := header.Get(hdrWebhookID), header.Get(hdrWebhookTimestamp)
	if id == "" || ts == "" {
		return nil, h.unauthorized(authBadSignature, "a signed request needs webhook-id, webhook-timestamp and webhook-signature")
	}
	matched := false
	for _, wh := range h.hooks {
		// The library's own timestamp check has a fixed tolerance and
		// clock; ours is below.
		if err := wh.VerifyIgnoringTimestamp(body, header); err == nil {
			matched = true
			break
		} else if errors.Is(err, standardwebhooks.ErrInvalidHeaders) {
			return nil, h.unauthorized(authBadTimestamp, "webhook-timestamp is not a Unix time in seconds")
		}
	}
	if !matched {
		return nil, h.unauthorized(authBadSignature, "no webhook-signature matches the body with any accepted secret")
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, h.unauthorized(authBadTimestamp, "webhook-timestamp is not a Unix time in seconds")
	}
	now := h.opts.Now()
	if p := h.checkTimestamp(secs, now); p != nil {
		return nil, p
	}
	at := time.Unix(secs, 0)
	c, ok := h.replays.claim(id, at.Add(h.opts.Tolerance), now)
	if !ok {
		p := &problem{Type: typeReplayed, Title: "Webhook already received", Status: http.StatusConflict,
			Detail: fmt.Sprintf("webhook-id %q was already received within the last %s and answered (or is being answered); its events are not taken twice. Send a new webhook with a new id.",
				id, h.opts.Tolerance), authReason: authReplayed}
		return nil, p
	}
	return c, nil
}

// checkTimestamp refuses a webhook-timestamp (Unix seconds) further than
// the tolerance from now, saying how far in words that make sense even
// for a time in milliseconds, the usual mistake.
func (h *Handler) checkTimestamp(secs int64, now time.Time) *problem {
	const msFrom = 100_000_000_000 // year 5138 in seconds; 1973 in milliseconds
	switch {
	case secs >= msFrom:
		return h.unauthorized(authBadTimestamp, fmt.Sprintf("webhook-timestamp %d looks like milliseconds; Standard Webhooks send Unix seconds (%d now)", secs, now.Unix()))
	case secs < 0:
		return h.unauthorized(authBadTimestamp, fmt.Sprintf("webhook-timestamp %d is before 1970; Standard Webhooks send Unix seconds (%d now)", secs, now.Unix()))
	}
	diff := now.Unix() - secs // 0 <= secs < 10^11: no overflow
	if diff < 0 {
		diff = -diff
	}
	if diff <= int64(h.opts.Tolerance/time.Second) {
		return nil
	}
	away := (time.Duration(diff) * time.Second).String()
	if diff > 100*365*24*3600 { // a time.Duration holds 292 years at most
		away = fmt.Sprintf("about %d years", diff/(365*24*3600))
	}
	return h.unauthorized(authBadTimestamp, fmt.Sprintf("webhook-timestamp %s is %s away from now; the tolerance is %s",
		time.Unix(secs, 0).UTC().Format(time.RFC3339), away, h.opts.Tolerance))
}

func (h *Handler) unauthorized(reason, detail string) *problem {
	p := &problem{Type: typeUnauthorized, Title: "Unauthorized", Status: http.StatusUnauthorized, Detail: detail, authReason: reason}
	if len(h.tokens) > 0 {
		p.challenge = `Bearer realm="kdsync"`
	}
	return p
}

// replayCache remembers webhook ids until their signature expires, at most
// max of them (the oldest are forgotten first). JetStream's duplicate
// window on the event ids is the second line against replays.
type replayCache struct {
	mu    sync.Mutex
	max   int
	gen   uint64
	ids   map[string]replayEntry
	order []claim // in insertion order; stale entries are skipped
	head  int
}

type replayEntry struct {
	expires time.Time
	gen     uint64
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, ids: make(map[string]replayEntry)}
}

// claim takes id until expires, unless it is held already.
func (c *replayCache) claim(id string, expires, now time.Time) (*claim, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.ids[id]; ok && e.expires.After(now) {
		return nil, false
	}
	c.evict(now)
	c.gen++
	c.ids[id] = replayEntry{expires: expires, gen: c.gen}
	cl := claim{id: id, gen: c.gen}
	c.order = append(c.order, cl)
	return &cl, true
}

// release forgets a claim whose request was not answered for good, so
// that the sender's retry is taken.
func (c *replayCache) release(cl *claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.ids[cl.id]; ok && e.gen == cl.gen {
		delete(c.ids, cl.id)
	}
}

// evict drops expired ids from the front of the order and, past max, the
// oldest ones. Must be called with mu held.
func (c *replayCache) evict(now time.Time) {
	for c.head < len(c.order) {
		front := c.order[c.head]
		e, ok := c.ids[front.id]
		live := ok && e.gen == front.gen
		if live && len(c.ids) < c.max && e.expires.After(now) {
			break
		}
		if live {
			delete(c.ids, front.id)
		}
		c.order[c.head] = claim{}
		c.head++
	}
	if c.head > 1024 && c.head > len(c.order)/2 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

// len is the number of ids held.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}
