package kdapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Secret is a credential. It prints, logs and marshals as "[redacted]".
type Secret string

// String redacts the secret.
func (Secret) String() string { return "[redacted]" }

// GoString redacts the secret in %#v.
func (Secret) GoString() string { return `kdapi.Secret("[redacted]")` }

// Format redacts the secret for every fmt verb. String alone would not do:
// fmt uses it only for %v, %s, %q, %x and %X, and prints the raw value for
// the others (%d gives "%!d(kdapi.Secret=<the secret>)"), also when the
// Secret is a field of a struct being printed.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, s.GoString())
		return
	}
	_, _ = io.WriteString(f, "[redacted]")
}

// LogValue redacts the secret in log/slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// MarshalText redacts the secret in JSON and other text encodings.
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Reveal returns the secret's value, for the code that must send it.
func (s Secret) Reveal() string { return string(s) }

// Tokens is a set of bearer tokens a server accepts (several, for
// rotation), kept as SHA-256 hashes so that Match compares in constant
// time whatever the lengths.
type Tokens [][sha256.Size]byte

// NewTokens hashes the accepted tokens.
func NewTokens(accepted ...Secret) Tokens {
	t := make(Tokens, 0, len(accepted))
	for _, s := range accepted {
		t = append(t, sha256.Sum256([]byte(s.Reveal())))
	}
	return t
}

// Match reports whether token is one of t, comparing with every one of
// them in constant time.
func (t Tokens) Match(token string) bool {
	sum := sha256.Sum256([]byte(token))
	ok := 0
	for _, want := range t {
		ok |= subtle.ConstantTimeCompare(sum[:], want[:])
	}
	return ok == 1
}

// AppAuth is an http.RoundTripper that signs each request with KooDrive's app
// authentication: a fresh X-Date per attempt, X-User-Id, and an Authorization
// header over host;x-date;x-user-id (koodrive-api.md §2b).
type AppAuth struct {
	AppID  string
	Secret Secret
	// UserID is sent as X-User-Id: the KooDrive user the app acts as.
	UserID string
	// Next sends the signed request; nil means http.DefaultTransport.
	Next http.RoundTripper
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time

	// sig signs with Secret reusing keyed HMACs; NewClient sets it. An
	// AppAuth made otherwise keys an HMAC per request.
	sig *signer
}

// String describes the transport without its secret.
func (a *AppAuth) String() string {
	return fmt.Sprintf("AppAuth{AppID:%s, UserID:%s, Secret:[redacted]}", a.AppID, a.UserID)
}

// RoundTrip signs a clone of req and sends it.
func (a *AppAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	r := cloneWithBody(req, body, 3)
	xdate := FormatDate(now())
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	var query url.Values
	if r.URL.RawQuery != "" {
		query = r.URL.Query()
	}
	auth := a.signerFor().authorization(a.AppID, SigningInput{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   query,
		Headers: []Header{{"host", host}, {"x-date", xdate}, {"x-user-id", a.UserID}},
		Body:    body,
	})
	// The three values in one allocation; the names are canonical.
	vals := []string{xdate, a.UserID, auth}
	r.Header["X-Date"], r.Header["X-User-Id"], r.Header["Authorization"] = vals[0:1:1], vals[1:2:2], vals[2:3:3]
	return next(a.Next).RoundTrip(r)
}

// signerFor returns the signer of a.Secret.
func (a *AppAuth) signerFor() *signer {
	if a.sig != nil && a.sig.secret == string(a.Secret) {
		return a.sig
	}
	return newSigner(string(a.Secret))
}

// TokenSource supplies bearer tokens; golang.org/x/oauth2's TokenSource is
// the convention (oauth2.StaticTokenSource for a fixed token).
type TokenSource = oauth2.TokenSource

// BearerAuth is an http.RoundTripper that sends "Authorization:
// Bearer+<token>" (a token that already starts with "Bearer" is sent as it
// is). It caches the token until it expires; after a 401 it fetches a new
// one and retries the request once.
type BearerAuth struct {
	Source TokenSource
	Next   http.RoundTripper

	mu  sync.Mutex
	tok *oauth2.Token
}

// String describes the transport without its token.
func (b *BearerAuth) String() string { return "BearerAuth{token:[redacted]}" }

// RoundTrip authenticates a clone of req and sends it.
func (b *BearerAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	if b.Source == nil {
		return nil, &APIError{Method: req.Method, Path: req.URL.Path, Msg: "no token source", Class: ClassAuth}
	}
	tok, err := b.token(nil)
	if err != nil {
		return nil, tokenError(req, err)
	}
	resp, err := b.send(req, body, tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// One retry with a fresh token.
	fresh, terr := b.token(tok)
	if terr != nil || fresh.AccessToken == tok.AccessToken {
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodySize))
	resp.Body.Close()
	return b.send(req, body, fresh)
}

func (b *BearerAuth) send(req *http.Request, body []byte, tok *oauth2.Token) (*http.Response, error) {
	r := cloneWithBody(req, body, 1)
	r.Header.Set("Authorization", bearerValue(tok.AccessToken))
	return next(b.Next).RoundTrip(r)
}

// token returns the cached token, or a new one when there is none, it has
// expired, or it equals stale (the one a 401 refused).
func (b *BearerAuth) token(stale *oauth2.Token) (*oauth2.Token, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tok != nil && b.tok.Valid() && (stale == nil || b.tok.AccessToken != stale.AccessToken) {
		return b.tok, nil
	}
	t, err := b.Source.Token()
	if err != nil {
		return nil, err
	}
	if t == nil || t.AccessToken == "" {
		return nil, errEmptyToken
	}
	b.tok = t
	return t, nil
}

var errEmptyToken = errors.New("token source returned an empty token")

// tokenError classifies a token source's failure for req. A token endpoint
// that refused the client (400, 401, 403) or an empty token is an
// authentication failure; anything else (the endpoint was unreachable or
// failing) may pass and is retryable. The source's error may quote the token
// endpoint's answer; it never holds the token, which was not issued.
func tokenError(req *http.Request, err error) error {
	var re *oauth2.RetrieveError
	if err == errEmptyToken || errors.As(err, &re) && re.Response != nil &&
		(re.Response.StatusCode == http.StatusBadRequest || re.Response.StatusCode == http.StatusUnauthorized || re.Response.StatusCode == http.StatusForbidden) {
		status := 0
		if re != nil {
			status = re.Response.StatusCode
		}
		return &APIError{HTTPStatus: status, Method: req.Method, Path: req.URL.Path, Msg: truncate("token source: "+err.Error(), maxMsgLen), Class: ClassAuth}
	}
	return &TransportError{Method: req.Method, Path: req.URL.Path, Err: fmt.Errorf("token source: %w", stripURL(err))}
}

func bearerValue(tok string) string {
	if strings.HasPrefix(tok, "Bearer ") || strings.HasPrefix(tok, "Bearer+") {
		return tok
	}
	return "Bearer+" + tok
}

func next(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		return http.DefaultTransport
	}
	return rt
}

// readBody returns the request body's bytes, using GetBody where the request
// has it, and closes req.Body as a RoundTripper must. The bytes are then
// replayed by cloneWithBody, once per attempt.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	rc := req.Body
	if req.GetBody != nil {
		var err error
		if rc, err = req.GetBody(); err != nil {
			return nil, fmt.Errorf("kdapi: body: %w", err)
		}
		defer rc.Close()
	}
	if n := req.ContentLength; n > 0 && n <= maxRequestBody {
		// One allocation of the right size; the extra byte detects a body
		// longer than announced.
		b := make([]byte, n+1)
		m, err := io.ReadFull(rc, b)
		switch {
		case err == io.ErrUnexpectedEOF && int64(m) == n:
			return b[:m], nil
		case err == nil:
			return nil, fmt.Errorf("kdapi: body: longer than ContentLength %d", n)
		default:
			return nil, fmt.Errorf("kdapi: body: %w", err)
		}
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("kdapi: body: %w", err)
	}
	return b, nil
}

// maxRequestBody bounds the buffer readBody sizes up front.
const maxRequestBody = 1 << 20

// cloneWithBody returns a copy of req whose Body and GetBody replay body,
// with a header map of its own with room for extra more keys: a transport
// sets headers on it and never modifies the caller's request (the other
// fields, the URL among them, are shared and only read, as
// golang.org/x/oauth2's Transport does).
func cloneWithBody(req *http.Request, body []byte, extra int) *http.Request {
	r := new(http.Request)
	*r = *req
	r.Header = make(http.Header, len(req.Header)+extra)
	for k, v := range req.Header {
		r.Header[k] = v[:len(v):len(v)] // an append on the copy reallocates
	}
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return r
}
