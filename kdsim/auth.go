package kdsim

import (
	"crypto/hmac"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kdsync/kdsync/kdapi"
)

// maxFutureSkew is how far in the future an X-Date may be.
const maxFutureSkew = time.Minute

// authenticate checks r's credentials. It returns "" when they are good and
// otherwise a message naming what is wrong; the message never contains a
// credential.
func (s *Server) authenticate(r *http.Request, body []byte) string {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "missing Authorization header"
	}
	if tok, ok := bearerToken(h); ok {
		if s.token == "" {
			return "bearer authentication is not enabled"
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) != 1 {
			return "bad bearer token"
		}
		return ""
	}
	if strings.HasPrefix(h, kdapi.Algorithm+" ") {
		if s.appID == "" {
			return "app authentication (HMAC-SHA256) is not enabled"
		}
		return s.verifySignature(r, h, body)
	}
	return `unsupported Authorization scheme: want "HMAC-SHA256 AppId=..." or "Bearer+<token>"`
}

// bearerToken returns the token of "Bearer+<token>" or "Bearer <token>".
func bearerToken(h string) (string, bool) {
	const scheme = "Bearer"
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	if c := h[len(scheme)]; c != '+' && c != ' ' {
		return "", false
	}
	return strings.TrimSpace(h[len(scheme)+1:]), true
}

// stripBearer removes a "Bearer+" or "Bearer " prefix from a configured
// token, which KooDrive's session API returns with the prefix included.
func stripBearer(tok string) string {
	if t, ok := bearerToken(tok); ok {
		return t
	}
	return tok
}

// verifySignature checks an app-authentication Authorization header h by
// rebuilding the canonical request from r with kdapi's signer.
func (s *Server) verifySignature(r *http.Request, h string, body []byte) string {
	appID, signed, sig, ok := kdapi.ParseAuthorization(h)
	if !ok {
		return "malformed Authorization header: want HMAC-SHA256 AppId=<id>,SignedHeaders=<h1;h2;...>,Signature=<hex>"
	}
	if subtle.ConstantTimeCompare([]byte(appID), []byte(s.appID)) != 1 {
		return "unknown AppId"
	}
	n := strings.Count(signed, ";") + 1
	hs := make([]kdapi.Header, 0, n)
	for name := range strings.SplitSeq(signed, ";") {
		if name == "" {
			return "SignedHeaders contains an empty header name"
		}
		hs = append(hs, kdapi.Header{Name: name})
	}
	kdapi.SortHeaders(hs)
	var hasHost, hasDate, hasUser bool
	for i := range hs {
		if i > 0 && hs[i].Name == hs[i-1].Name {
			return fmt.Sprintf("SignedHeaders names %s twice", hs[i].Name)
		}
		switch hs[i].Name {
		case "host":
			hasHost = true
		case "x-date":
			hasDate = true
		case "x-user-id":
			hasUser = true
		}
	}
	if !hasHost || !hasDate || !hasUser {
		var missing []string
		for _, m := range []struct {
			ok   bool
			name string
		}{{hasHost, "host"}, {hasDate, "x-date"}, {hasUser, "x-user-id"}} {
			if !m.ok {
				missing = append(missing, m.name)
			}
		}
		return "SignedHeaders must include host, x-date and x-user-id (missing " + strings.Join(missing, ", ") + ")"
	}
	var xdate string
	for i := range hs {
		switch hs[i].Name {
		case "host":
			hs[i].Value = r.Host
			continue
		}
		vs := r.Header.Values(hs[i].Name)
		if len(vs) == 0 {
			return fmt.Sprintf("signed header %s is not in the request", hs[i].Name)
		}
		hs[i].Value = vs[0]
		if len(vs) > 1 {
			hs[i].Value = strings.Join(vs, ",")
		}
		switch hs[i].Name {
		case "x-date":
			xdate = strings.TrimSpace(hs[i].Value) // signed trimmed, too
		case "x-user-id":
			if strings.TrimSpace(hs[i].Value) == "" {
				return "X-User-Id is empty"
			}
		}
	}
	t, err := time.Parse(kdapi.DateFormat, xdate)
	if err != nil {
		return fmt.Sprintf("X-Date %q is malformed: want YYYYMMDDTHHMMSSZ (UTC)", truncate(xdate, 40))
	}
	now := s.now()
	if age := now.Sub(t); age > s.window {
		return fmt.Sprintf("X-Date %s is outside the window: %s old, more than %s", xdate, age.Truncate(time.Second), s.window)
	}
	if ahead := t.Sub(now); ahead > maxFutureSkew {
		return fmt.Sprintf("X-Date %s is outside the window: %s in the future, more than %s", xdate, ahead.Truncate(time.Second), maxFutureSkew)
	}
	in := kdapi.SigningInput{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Headers: hs, Body: body}
	want := kdapi.Sign(s.secret, in)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		if s.debug {
			s.log.Debug("signature mismatch", "canonical_request", kdapi.CanonicalRequest(in))
		}
		// HMAC cannot tell which part differs: name everything it covers.
		return "signature mismatch: the signature does not match this request's method, path, query, signed headers (" +
			truncate(signed, 80) + ") and body under the AppId's secret"
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
