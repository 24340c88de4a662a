package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is one signed-in browser.
type session struct {
	id      string
	csrf    string
	who     string
	created time.Time
	seen    time.Time
}

// sessions keeps the signed-in browsers in memory: a restart signs
// everyone out.
type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	ttl  time.Duration // from sign-in
	idle time.Duration // since the last request
	now  func() time.Time
}

func newSessions(ttl, idle time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl, idle: idle, now: now}
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// start signs who in and returns the new session.
func (s *sessions) start(who string) *session {
	now := s.now()
	ss := &session{id: randomToken(), csrf: randomToken(), who: who, created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Forget the expired ones while here.
	for id, old := range s.m {
		if s.expired(old, now) {
			delete(s.m, id)
		}
	}
	s.m[ss.id] = ss
	return ss
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.created) >= s.ttl || now.Sub(ss.seen) >= s.idle
}

// get returns the live session id names, touching it; nil when there is
// none or it expired (it is then forgotten).
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if s.expired(ss, now) {
		delete(s.m, id)
		return nil
	}
	ss.seen = now
	cp := *ss
	return &cp
}

// end signs the session out.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// equal compares secrets in constant time.
func equal(a, b string) bool {
	return len(a) > 0 && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// bearerCSRF is the CSRF token of bearer-token clients: derived from the
// process's key, so a script asks for it once (GET /api/session).
func bearerCSRF(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("kdsync console bearer csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
