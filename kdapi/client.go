// Package kdapi is a client for KooDrive's enterprise user API
// (/koodrive/ose/v1): users and departments, with both of KooDrive's
// authentication modes as http.RoundTrippers and one typed error model.
//
// The client never logs. A failure is an *APIError (KooDrive answered, or an
// authentication transport refused to send), a *TransportError (KooDrive did
// not answer), or, for invalid arguments caught before anything is sent, an
// error wrapping ErrPermanent. Each matches exactly one of the class
// sentinels (ErrRetryable, ErrAuth, ErrNotFound, ErrAlreadyExists,
// ErrPermanent) with errors.Is. The one exception is the end of the caller's
// context: then the error wraps ctx.Err() (context.Canceled or
// context.DeadlineExceeded) and matches no class sentinel, so that a shutdown
// is neither retried nor mistaken for a permanent failure; check for it first.
package kdapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kdsync/kdsync/redact"
)

// APIPath is the path every KooDrive enterprise endpoint lives under.
const APIPath = "/koodrive/ose/v1"

// maxBodySize bounds how much of any response the client reads.
const maxBodySize = 1 << 20

// Default settings.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultLanguage = "en-US"
)

// Default code lists. KooDrive's documentation gives no codes for "user
// already exists" or "user not found"; these are the simulator's (kdsim) and
// 13000309, "resource does not exist", from the documented error table.
// Operators override them with WithAlreadyExistsCodes and WithNotFoundCodes.
var (
	DefaultAlreadyExistsCodes = []string{"13000501"}
	DefaultNotFoundCodes      = []string{"13000309", "13000502"}
)

// Client calls KooDrive. It is safe for concurrent use.
type Client struct {
	rt          http.RoundTripper // the authentication transport
	timeout     time.Duration
	base        *url.URL // endpoint root + APIPath, ending in '/'
	baseEscaped string   // base.EscapedPath()
	language    string

	alreadyExistsCodes map[string]struct{}
	notFoundCodes      map[string]struct{}
	authCodes          map[string]struct{}
	retryableCodes     map[string]struct{}
	pacer              Pacer
}

// Option configures a Client. Options validate their input.
type Option func(*options) error

type options struct {
	baseURL            string
	httpClient         *http.Client
	auth               func(http.RoundTripper) http.RoundTripper
	timeout            time.Duration
	language           string
	maxConns           int
	alreadyExistsCodes []string
	notFoundCodes      []string
	authCodes          []string
	retryableCodes     []string
	pacer              Pacer
}

// WithBaseURL sets the endpoint root, for example
// https://intl.myhuaweicloud-koodrive.com. The client appends /koodrive/ose/v1
// (unless the URL already ends in it).
func WithBaseURL(u string) Option {
	return func(o *options) error {
		// Error messages never quote u: it may carry a password.
		p, err := url.Parse(u)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // *url.Error quotes the whole URL
			}
			return fmt.Errorf("base URL: %w", err)
		}
		if p.User != nil {
			return fmt.Errorf("base URL %q: user info not allowed", redactURL(p))
		}
		if p.Scheme != "http" && p.Scheme != "https" || p.Host == "" || p.Opaque != "" {
			return fmt.Errorf("base URL: want http(s)://host, got scheme %q host %q", p.Scheme, p.Host)
		}
		if p.RawQuery != "" || p.Fragment != "" || p.ForceQuery {
			return fmt.Errorf("base URL %q: no query or fragment allowed", redactURL(p))
		}
		o.baseURL = u
		return nil
	}
}

// WithHTTPClient sends requests through hc's Transport, wrapped by the
// authentication transport, and keeps hc's Timeout unless WithTimeout is
// given. Nothing else of hc is used: redirects are never followed (see
// NewClient) and there are no cookies.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) error {
		if hc == nil {
			return errors.New("http client is nil")
		}
		o.httpClient = hc
		return nil
	}
}

// WithTimeout bounds each HTTP attempt (default 10s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("timeout must be positive")
		}
		o.timeout = d
		return nil
	}
}

// WithMaxConns sizes the keep-alive pool to n connections per host, which
// should match the caller's concurrency. Ignored with WithHTTPClient.
func WithMaxConns(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return errors.New("max conns must be positive")
		}
		o.maxConns = n
		return nil
	}
}

// WithAppAuth signs every request with KooDrive's app authentication
// (HMAC-SHA256). userID is the X-User-Id, the KooDrive user the app acts as.
func WithAppAuth(appID string, secret Secret, userID string) Option {
	return func(o *options) error {
		if appID == "" || secret == "" || userID == "" {
			return errors.New("app auth needs app id, app secret and user id")
		}
		o.auth = func(next http.RoundTripper) http.RoundTripper {
			return &AppAuth{AppID: appID, Secret: secret, UserID: userID, Next: next, sig: newSigner(secret.Reveal())}
		}
		return nil
	}
}

// WithBearer authenticates with a bearer token from ts (use
// oauth2.StaticTokenSource for a fixed token). After a 401 the token is
// fetched again once and the request retried.
func WithBearer(ts TokenSource) Option {
	return func(o *options) error {
		if ts == nil {
			return errors.New("token source is nil")
		}
		o.auth = func(next http.RoundTripper) http.RoundTripper {
			return &BearerAuth{Source: ts, Next: next}
		}
		return nil
	}
}

// WithLanguage sets the language header (default en-US).
func WithLanguage(lang string) Option {
	return func(o *options) error {
		if lang == "" || strings.ContainsAny(lang, "\r\n") {
			return fmt.Errorf("invalid language %q", lang)
		}
		o.language = lang
		return nil
	}
}

// WithAlreadyExistsCodes replaces the envelope codes that mean "user already
// exists" on create.
func WithAlreadyExistsCodes(codes ...string) Option {
	return func(o *options) error { o.alreadyExistsCodes = codes; return nil }
}

// WithNotFoundCodes replaces the envelope codes that mean "not found".
func WithNotFoundCodes(codes ...string) Option {
	return func(o *options) error { o.notFoundCodes = codes; return nil }
}

// WithAuthCodes adds envelope codes that mean the credentials were refused.
func WithAuthCodes(codes ...string) Option {
	return func(o *options) error { o.authCodes = codes; return nil }
}

// WithRetryableCodes adds envelope codes that mean "try again later".
func WithRetryableCodes(codes ...string) Option {
	return func(o *options) error { o.retryableCodes = codes; return nil }
}

// NewClient returns a client for the endpoint given by WithBaseURL.
//
// The client does not follow redirects: the authentication transport signs
// every hop, so following one would hand KooDrive credentials to whatever
// host the redirect names. A 3xx answer is a permanent *APIError.
func NewClient(opts ...Option) (*Client, error) {
	o := options{
		alreadyExistsCodes: DefaultAlreadyExistsCodes,
		notFoundCodes:      DefaultNotFoundCodes,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("kdapi: %w", err)
		}
	}
	if o.baseURL == "" {
		return nil, errors.New("kdapi: base URL is required")
	}
	if o.auth == nil {
		return nil, errors.New("kdapi: authentication is required (WithAppAuth or WithBearer)")
	}
	base, _ := url.Parse(o.baseURL) // validated by WithBaseURL
	root := strings.TrimSuffix(strings.TrimRight(base.Path, "/"), APIPath)
	base.Path = strings.TrimRight(root, "/") + APIPath + "/"
	base.RawPath = ""

	timeout := DefaultTimeout
	var next http.RoundTripper
	if o.httpClient != nil {
		timeout, next = o.httpClient.Timeout, o.httpClient.Transport
	}
	if o.timeout > 0 {
		timeout = o.timeout
	}
	if next == nil {
		next = newTransport(o.maxConns)
	}
	if o.language == "" {
		o.language = DefaultLanguage
	}
	return &Client{
		rt:                 o.auth(next),
		timeout:            timeout,
		base:               base,
		baseEscaped:        base.EscapedPath(),
		language:           o.language,
		alreadyExistsCodes: set(o.alreadyExistsCodes),
		notFoundCodes:      set(o.notFoundCodes),
		authCodes:          set(o.authCodes),
		retryableCodes:     set(o.retryableCodes),
		pacer:              o.pacer,
	}, nil
}

// newTransport is a keep-alive pool sized for n concurrent calls.
func newTransport(n int) *http.Transport {
	if n <= 0 {
		n = 64
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = n * 2
	t.MaxIdleConnsPerHost = n
	t.IdleConnTimeout = 90 * time.Second
	// KooDrive's requests and answers are a few hundred bytes: 1 KiB
	// buffers instead of 4 KiB save 6 KiB per connection, and at 20 ms
	// per call kdsync keeps about 200 (a longer answer is read in pieces).
	t.ReadBufferSize, t.WriteBufferSize = 1<<10, 1<<10
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}

func set(codes []string) map[string]struct{} {
	m := make(map[string]struct{}, len(codes))
	for _, c := range codes {
		m[normalizeCode(c)] = struct{}{}
	}
	return m
}

// BaseURL returns the URL endpoints are resolved against (ending in
// /koodrive/ose/v1/).
func (c *Client) BaseURL() string { return c.base.String() }

type traceKey struct{}

// WithTraceID returns a context whose requests carry an X-Traceid derived
// from id (typically the event id), so a KooDrive call can be traced back to
// the event that caused it. See TraceID.
func WithTraceID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceKey{}, TraceID(id))
}

// TraceID derives the 58-character X-Traceid kdsync sends for an event id:
// the first 58 hex digits of SHA-256(id). KooDrive documents the header as 58
// characters; hashing keeps any id within that form.
func TraceID(id string) string {
	s := sha256.Sum256([]byte(id))
	return hex.EncodeToString(s[:])[:58]
}

// NewRequest builds a request for path (relative to /koodrive/ose/v1/, no
// leading slash, already escaped: callers escape each segment with
// url.PathEscape) with body encoded as JSON when non-nil. The query is sent in
// its canonical form (sorted, RFC 3986 percent-encoding with %20 for a space),
// so the wire query and the signed one are the same text. Errors match
// ErrPermanent.
func (c *Client) NewRequest(ctx context.Context, method, path string, query url.Values, body any) (*http.Request, error) {
	unescaped, err := checkPath(path)
	if err != nil {
		return nil, fmt.Errorf("kdapi: %w: invalid path %q: %s", ErrPermanent, path, err)
	}
	u := *c.base
	u.Path = c.base.Path + unescaped
	u.RawPath = c.baseEscaped + path // used by u.String() when it is a valid encoding of u.Path
	u.RawQuery = canonicalQuery(query)
	var r io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("kdapi: %w: encode %s %s: %w", ErrPermanent, method, path, err)
		}
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, fmt.Errorf("kdapi: %w: %s %s: %w", ErrPermanent, method, path, err)
	}
	// The values in one allocation; the names are canonical, as
	// Header.Set would make them.
	vals := [...]string{"application/json", c.language, "", "application/json;charset=UTF-8"}
	h := req.Header
	h["Accept"], h["Language"] = vals[0:1:1], vals[1:2:2]
	if id, ok := ctx.Value(traceKey{}).(string); ok {
		vals[2] = id
		h["X-Traceid"] = vals[2:3:3]
	}
	if body != nil {
		h["Content-Type"] = vals[3:4:4]
	}
	return req, nil
}

// checkPath validates an escaped relative path and returns it unescaped. It
// refuses an absolute path, a query or fragment (the query has its own
// argument), a bad escape, and empty, "." or ".." segments, which would move
// the request elsewhere or be dropped from the canonical URI.
func checkPath(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return "", errors.New("must be relative")
	}
	if strings.ContainsAny(p, "?#") {
		return "", errors.New("query or fragment in path")
	}
	unescaped, err := url.PathUnescape(p)
	if err != nil {
		return "", err
	}
	segs := strings.Split(unescaped, "/")
	for i, s := range segs {
		if s == "." || s == ".." || s == "" && i != len(segs)-1 {
			return "", errors.New("empty, '.' or '..' segment")
		}
	}
	return unescaped, nil
}

// envelope is KooDrive's response wrapper. Payloads sit under data, list or
// at the top level depending on the endpoint.
type envelope struct {
	Code  Code            `json:"code"`
	Msg   string          `json:"msg"`
	Data  json.RawMessage `json:"data"`
	List  json.RawMessage `json:"list"`
	Total *FlexInt64      `json:"total"`
}

// Response is KooDrive's answer to a successful call.
type Response struct {
	HTTPStatus int
	// Body is the raw response body (at most 1 MiB).
	Body []byte
	env  envelope
}

// Do sends req and checks the answer: a non-2xx status or a non-zero envelope
// code is an *APIError. On success it returns the response; the payload is
// decoded by the endpoint method. The response body is read (at most 1 MiB,
// plus a bounded drain) and closed, so the connection can be reused. The
// call's timeout (WithTimeout) covers sending and reading the answer, not
// the wait for the pacer.
func (c *Client) Do(req *http.Request) (*Response, error) {
	var done func(*http.Response, error)
	if c.pacer != nil {
		d, err := c.pacer.Acquire(req.Context())
		if err != nil {
			return nil, transportError(req, err)
		}
		done = d
	}
	sent := req
	if c.timeout > 0 {
		ctx, cancel := context.WithTimeoutCause(req.Context(), c.timeout, errCallTimeout{c.timeout})
		defer cancel()
		sent = req.WithContext(ctx)
	}
	// The transport itself, not an http.Client: the client follows no
	// redirects, keeps no cookies and has its own timeout, and
	// http.Client.Do would copy the headers of every request for
	// redirects that never come.
	resp, err := c.rt.RoundTrip(sent)
	if done != nil {
		if req.Context().Err() != nil {
			done(nil, context.Canceled)
		} else {
			done(resp, err)
		}
	}
	if err != nil {
		return nil, transportError(req, err)
	}
	defer resp.Body.Close()
	return c.checkResponse(req, resp)
}

// errCallTimeout is the cause of a call that ran out of its own time
// (WithTimeout), as opposed to the end of the caller's context. net/http
// reports a context's cause, so the error is a net.Error whose Timeout is
// true that does not match context.DeadlineExceeded, which callers read as
// the end of their own context.
type errCallTimeout struct{ d time.Duration }

func (e errCallTimeout) Error() string   { return fmt.Sprintf("no answer within %v", e.d) }
func (e errCallTimeout) Timeout() bool   { return true }
func (e errCallTimeout) Temporary() bool { return true }

// transportError classifies a failure to get an answer.
func transportError(req *http.Request, err error) error {
	// The context's error is the more useful one when it ended.
	if ctxErr := req.Context().Err(); ctxErr != nil {
		return fmt.Errorf("kdapi: %s %s: %w", req.Method, req.URL.Path, ctxErr)
	}
	// An authentication transport's own verdict (say, a token source that
	// refused the credentials) keeps its class.
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	return &TransportError{Method: req.Method, Path: req.URL.Path, Err: stripURL(err)}
}

// maxMsgLen bounds the server message an *APIError carries.
const maxMsgLen = 512

// checkResponse reads at most 1 MiB of the body and maps a non-2xx status or
// a non-zero envelope code to an *APIError.
func (c *Client) checkResponse(req *http.Request, resp *http.Response) (*Response, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize+1))
	if err != nil {
		return nil, transportError(req, fmt.Errorf("read body: %w", err))
	}
	// Drain what is left (bounded) so the connection is reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	tooLarge := len(body) > maxBodySize
	if tooLarge {
		body = body[:maxBodySize]
	}
	out := &Response{HTTPStatus: resp.StatusCode, Body: body}
	ok2xx := resp.StatusCode >= 200 && resp.StatusCode < 300
	trimmed := bytes.TrimSpace(body)
	if resp.StatusCode == http.StatusNoContent && len(trimmed) == 0 {
		return out, nil // success that carries no envelope by definition
	}
	var envErr error
	switch {
	case tooLarge:
		envErr = fmt.Errorf("response body exceeds %d bytes", maxBodySize)
	case len(trimmed) == 0:
		envErr = errEmptyBody
	case trimmed[0] != '{':
		envErr = errors.New("not a JSON object")
	default:
		envErr = decodeEnvelope(body, &out.env)
	}
	if ok2xx && envErr == nil && out.env.Code.IsZero() {
		return out, nil
	}
	ae := &APIError{
		HTTPStatus: resp.StatusCode,
		Code:       string(out.env.Code),
		Msg:        truncate(out.env.Msg, maxMsgLen),
		Method:     req.Method,
		Path:       req.URL.Path,
		RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	switch {
	case ok2xx && envErr == errEmptyBody:
		ae.Class = ClassPermanent
		ae.Msg = "empty response body"
	case ok2xx && envErr != nil:
		// 2xx with a body that is not an envelope: KooDrive answered, but not
		// with anything the client can trust.
		ae.Msg = truncate("malformed response: "+envErr.Error(), maxMsgLen)
		ae.Class = ClassPermanent
	default:
		if ae.Msg == "" && envErr != nil {
			ae.Msg = http.StatusText(resp.StatusCode)
		}
		ae.Class = c.classify(resp.StatusCode, normalizeCode(ae.Code))
	}
	return nil, ae
}

var errEmptyBody = errors.New("empty body")

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Code is the envelope's code, which KooDrive sends as a JSON number on some
// endpoints and a string on others. It holds the text, normalised so that 0,
// "0" and "00" compare equal.
type Code string

// UnmarshalJSON accepts a JSON number, a string or null.
func (c *Code) UnmarshalJSON(b []byte) error {
	s, err := flexText(b)
	if err != nil {
		return fmt.Errorf("code: %w", err)
	}
	*c = Code(normalizeCode(s))
	return nil
}

// IsZero reports whether the code means success: 0 or absent.
func (c Code) IsZero() bool { return c == "" || c == "0" }

func normalizeCode(s string) string {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return strconv.FormatInt(n, 10)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10)
	}
	return s
}

// flexText returns the text of a JSON string or number; null is "".
func flexText(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		return "", nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", err
		}
		return s, nil
	case b[0] == '-' || b[0] >= '0' && b[0] <= '9':
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return "", err
		}
		return n.String(), nil
	}
	return "", fmt.Errorf("want a string or a number, got %.20s", b)
}

// FlexInt64 is an integer KooDrive may send as a JSON number or a string.
type FlexInt64 int64

// UnmarshalJSON accepts a number, a numeric string, "" or null (zero).
func (n *FlexInt64) UnmarshalJSON(b []byte) error {
	s, err := flexText(b)
	if err != nil {
		return err
	}
	if s == "" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("integer %q: %w", s, err)
	}
	*n = FlexInt64(v)
	return nil
}

// FlexString is an identifier KooDrive may send as a JSON string or number.
type FlexString string

// UnmarshalJSON accepts a string, a number or null.
func (s *FlexString) UnmarshalJSON(b []byte) error {
	t, err := flexText(b)
	if err != nil {
		return err
	}
	*s = FlexString(t)
	return nil
}

// redactURL masks user info, the query and the fragment, where secrets
// could hide.
func redactURL(u *url.URL) string { return redact.URL(u.String()) }

// stripURL replaces a *url.Error's URL by its path so that no query string
// reaches an error message.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if p, perr := url.Parse(ue.URL); perr == nil {
			return &url.Error{Op: ue.Op, URL: redactURL(p), Err: ue.Err}
		}
	}
	return err
}
