// Package ingress is kdsync's webhook ingress: identity events sent by an
// IdP or HRIS over HTTP as CloudEvents are validated and stored in the
// identity stream, where the consumer picks them up like any other event.
//
// POST /events takes the three content modes of the CloudEvents HTTP
// binding: structured (application/cloudevents+json: the JSON envelope is
// published as it is), binary (ce-* headers, the body is data: the headers
// become the NATS message's ce-* headers) and batch
// (application/cloudevents-batch+json: each element becomes one structured
// message). Each event is checked with handlers.Decoder, the consumer's own
// decoder, and published on <SubjectPrefix>.<action>.<userId> with
// Nats-Msg-Id = the event id, so that JetStream drops a sender's retries.
//
// A 202 is sent only after JetStream acknowledged every event of the
// request: a 202 is never a lie. Bad input gets a 400 with an RFC 9457
// problem body naming the field, a missing or wrong credential 401, a body
// over Options.MaxBytes 413, and while NATS is unavailable the answer is 503
// with Retry-After: nothing is stored that the sender was not told of, and
// a retry is never doubled.
//
// Senders authenticate with a bearer token or a Standard Webhooks signature
// (webhook-id, webhook-timestamp, webhook-signature; HMAC-SHA256 keyed by a
// whsec_ secret). Signed requests older or newer than Options.Tolerance are
// refused, and so is a webhook-id already accepted within that window.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// Defaults of Options.
const (
	DefaultSubjectPrefix  = "identity.employee"
	DefaultMaxBytes       = 1 << 20
	DefaultTolerance      = 5 * time.Minute
	DefaultPublishTimeout = 5 * time.Second
	DefaultRetryAfter     = 5 * time.Second
	DefaultReplayCache    = 100_000
	DefaultMaxBatch       = 1000
)

// Options configure a Handler. Zero values take the defaults above.
type Options struct {
	// Conn is the NATS connection events are published on; required. The
	// caller owns it.
	Conn *nats.Conn
	// SubjectPrefix: events are published on <prefix>.<action>.<userId>.
	SubjectPrefix string
	// Decoder checks each event as the consumer will; its MaxSize bounds
	// one event (body and headers).
	Decoder handlers.Decoder
	// MaxBytes bounds a request body, a whole batch included.
	MaxBytes int64
	// MaxBatch bounds the events of one batch.
	MaxBatch int

	// Tokens are the bearer tokens accepted in Authorization.
	Tokens []kdapi.Secret
	// Secrets are the Standard Webhooks signing secrets (whsec_<base64>)
	// accepted; several allow rotation.
	Secrets []kdapi.Secret
	// Tolerance is how far a signed request's webhook-timestamp may be from
	// now, either way; webhook ids are remembered as long.
	Tolerance time.Duration
	// ReplayCache bounds the webhook ids remembered.
	ReplayCache int
	// AllowUnauthenticated accepts requests without credentials. Only for
	// local use; New refuses a Handler without any credential otherwise.
	AllowUnauthenticated bool

	// PublishTimeout bounds the wait for JetStream's acknowledgements.
	PublishTimeout time.Duration
	// RetryAfter is what a 503 tells senders to wait.
	RetryAfter time.Duration

	// Injected dependencies.
	Logger     *slog.Logger
	Registerer prometheus.Registerer // required
	// Now is the clock of timestamp checks; default time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Tolerance == 0 {
		o.Tolerance = DefaultTolerance
	}
	if o.ReplayCache == 0 {
		o.ReplayCache = DefaultReplayCache
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every problem with the settings (not the injected
// dependencies) at once, defaults applied.
func (o Options) Validate() error {
	o.setDefaults()
	var errs []error
	if len(o.Tokens) == 0 && len(o.Secrets) == 0 && !o.AllowUnauthenticated {
		errs = append(errs, errors.New("ingress: give bearer tokens (KDSYNC_INGRESS_TOKEN) or signing secrets (KDSYNC_INGRESS_SECRET); unauthenticated ingress must be asked for"))
	}
	for i, t := range o.Tokens {
		if len(t) < 16 {
			errs = append(errs, fmt.Errorf("ingress: bearer token %d is shorter than 16 characters", i+1))
		}
	}
	for i, s := range o.Secrets {
		if _, err := newWebhook(s); err != nil {
			errs = append(errs, fmt.Errorf("ingress: signing secret %d: %w", i+1, err))
		}
	}
	if strings.HasSuffix(o.SubjectPrefix, ".") || strings.ContainsAny(o.SubjectPrefix, " *>") {
		errs = append(errs, fmt.Errorf("ingress: subject prefix %q: want tokens separated by dots, without wildcards", o.SubjectPrefix))
	}
	if o.MaxBytes < 1024 {
		errs = append(errs, fmt.Errorf("ingress: MaxBytes %d: want at least 1024", o.MaxBytes))
	}
	for name, d := range map[string]time.Duration{"Tolerance": o.Tolerance, "PublishTimeout": o.PublishTimeout, "RetryAfter": o.RetryAfter} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("ingress: %s must not be negative", name))
		}
	}
	if o.ReplayCache < 0 {
		errs = append(errs, errors.New("ingress: ReplayCache must not be negative"))
	}
	if o.MaxBatch < 1 || o.MaxBatch > maxPendingPublishes/8 {
		errs = append(errs, fmt.Errorf("ingress: MaxBatch %d: want 1 to %d", o.MaxBatch, maxPendingPublishes/8))
	}
	return errors.Join(errs...)
}

// maxPendingPublishes bounds the publishes awaiting JetStream's
// acknowledgement, all requests together; past it a publish waits briefly
// and then fails (503). It leaves room for several full batches at once.
const maxPendingPublishes = 64 << 10

// Handler serves POST /events. Build it with New; it is safe for
// concurrent use.
type Handler struct {
	opts    Options
	js      jetstream.JetStream
	hooks   []*standardwebhooks.Webhook
	tokens  kdapi.Tokens
	replays *replayCache
	m       *metrics
	log     *slog.Logger
}

// New checks o and builds a Handler, registering its metrics.
func New(o Options) (*Handler, error) {
	o.setDefaults()
	errs := []error{o.Validate()}
	if o.Conn == nil {
		errs = append(errs, errors.New("ingress: Options.Conn is required"))
	}
	if o.Registerer == nil {
		errs = append(errs, errors.New("ingress: Options.Registerer is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h := &Handler{opts: o, log: o.Logger, replays: newReplayCache(o.ReplayCache)}
	for _, s := range o.Secrets {
		wh, _ := newWebhook(s) // checked by Validate
		h.hooks = append(h.hooks, wh)
	}
	h.tokens = kdapi.NewTokens(o.Tokens...)
	js, err := jetstream.New(o.Conn, jetstream.WithPublishAsyncTimeout(o.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(maxPendingPublishes))
	if err != nil {
		return nil, fmt.Errorf("ingress: jetstream: %w", err)
	}
	h.js = js
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	h.m = m
	return h, nil
}

// Register adds POST /events to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("POST /events", h)
}

// NewServer returns the http.Server that kdsync run and kdsync ingest serve
// the ingress with: handler behind bounded header sizes and header, read,
// write and idle times, so that a slow or silent sender cannot hold a
// connection for ever. The write time (counted from the end of the
// headers) covers reading the body, waiting publishTimeout for JetStream's
// acknowledgements and answering.
func NewServer(handler http.Handler, publishTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30*time.Second + publishTimeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Ready reports whether events can be stored now: NATS is connected.
func (h *Handler) Ready() bool { return h.opts.Conn.IsConnected() }

// CheckStream returns the stream that stores the subjects events are
// published on, or an error when none does (every event would get 503).
func (h *Handler) CheckStream(ctx context.Context) (string, error) {
	subject := h.opts.SubjectPrefix + "." + string(handlers.Hired) + ".0"
	name, err := h.js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return "", fmt.Errorf("ingress: no stream stores %s.>: %w", h.opts.SubjectPrefix, err)
	}
	return name, nil
}

// ServeHTTP handles one POST of one or more events.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	md := modeOf(r.Header)
	rw := &statusWriter{ResponseWriter: w}
	defer func() { h.m.request(md, rw.status, time.Since(start)) }()

	cred, p := h.authenticate(r.Header)
	if p != nil {
		h.refuse(rw, r, md, p)
		return
	}
	if md == modeUnknown {
		h.refuse(rw, r, md, unsupportedMedia(r.Header.Get("Content-Type")))
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		h.refuse(rw, r, md, unsupportedEncoding(enc))
		return
	}
	body, p := h.readBody(w, r)
	if p != nil {
		h.refuse(rw, r, md, p)
		return
	}
	var claim *claim
	if cred == credSignature {
		claim, p = h.verifySignature(r.Header, body)
		if p != nil {
			h.refuse(rw, r, md, p)
			return
		}
	}
	status := h.serveEvents(r.Context(), rw, md, r.Header, body)
	if claim != nil && status >= 500 {
		// A webhook id is spent once its request was answered for good;
		// after a 503 the sender's retry must get through.
		h.replays.release(claim)
	}
}

// readBody reads the request body up to MaxBytes.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *problem) {
	if r.ContentLength > h.opts.MaxBytes {
		return nil, tooLarge(fmt.Sprintf("the body is %d bytes, the limit is %d", r.ContentLength, h.opts.MaxBytes))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(fmt.Sprintf("the body is over the limit of %d bytes", h.opts.MaxBytes))
		}
		return nil, &problem{Type: typeBadRequest, Title: "Unreadable request body", Status: http.StatusBadRequest, Detail: err.Error()}
	}
	return body, nil
}

// serveEvents converts, checks, publishes and answers. It returns the
// status sent.
func (h *Handler) serveEvents(ctx context.Context, w http.ResponseWriter, md mode, header http.Header, body []byte) int {
	var evs []*pending
	if md == modeBatch {
		var p *problem
		evs, p = h.batch(body)
		if p != nil {
			reason := handlers.ReasonMalformed
			if p.Status == http.StatusRequestEntityTooLarge {
				reason = handlers.ReasonTooLarge
			}
			h.m.event(string(reason))
			return h.writeProblem(w, p)
		}
	} else {
		evs = []*pending{h.single(md, header, body)}
	}
	h.publish(ctx, evs)
	for _, e := range evs {
		h.m.event(e.metricResult())
		if e.status != http.StatusAccepted {
			h.log.Info("event refused", "mode", md.String(), "id", e.id, "status", e.status, "detail", e.detail)
		}
	}
	if md == modeBatch {
		return h.writeBatch(w, evs)
	}
	return h.writeSingle(w, evs[0])
}

// refuse answers a request refused before its events were looked at.
// The connection is closed after the answer, without reading the rest of
// the body: a sender refused (a stranger, say) trickling a body gets its
// answer at once, not when the server's read timeout ends.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, md mode, p *problem) {
	if p.authReason != "" {
		h.m.authFailure(p.authReason)
		h.log.Info("request refused", "mode", md.String(), "status", p.Status, "reason", p.authReason, "remote", r.RemoteAddr)
	}
	w.Header().Set("Connection", "close")
	h.writeProblem(w, p)
	// The server drains up to 256 KiB of an unread body before closing;
	// a read deadline now ends that wait. (Not every ResponseWriter
	// supports it, httptest's recorder for one: then there is no wait.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// retryAfter is the Retry-After header value of a 503: whole seconds.
func (h *Handler) retryAfter() string {
	s := int((h.opts.RetryAfter + time.Second - 1) / time.Second)
	return strconv.Itoa(max(s, 1))
}

// statusWriter remembers the status written, for the request metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
