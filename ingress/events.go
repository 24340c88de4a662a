package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/handlers"
)

// mode is a content mode of the CloudEvents HTTP binding.
type mode int

const (
	modeUnknown mode = iota
	modeStructured
	modeBinary
	modeBatch
)

var modes = []mode{modeUnknown, modeStructured, modeBinary, modeBatch}

func (m mode) String() string {
	switch m {
	case modeStructured:
		return "structured"
	case modeBinary:
		return "binary"
	case modeBatch:
		return "batch"
	}
	return "unknown"
}

// Media types of the CloudEvents HTTP binding's JSON formats.
const (
	mediaStructured = "application/cloudevents+json"
	mediaBatch      = "application/cloudevents-batch+json"
)

// modeOf tells the content mode from the headers: the structured and batch
// media types, else binary when ce-specversion is present.
func modeOf(h http.Header) mode {
	if ct := h.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		switch mt {
		case mediaStructured:
			return modeStructured
		case mediaBatch:
			return modeBatch
		}
	}
	if h.Get("Ce-Specversion") != "" {
		return modeBinary
	}
	return modeUnknown
}

// pending is one event of a request on its way to the stream.
type pending struct {
	index int
	id    string
	ev    *handlers.Event // the decoded event; nil when refused
	msg   *nats.Msg       // nil when the event was refused
	// status is the event's fate: 202 stored, 400/413/415 refused, 409
	// stored earlier with other content, 503 not stored (NATS
	// unavailable).
	status int
	detail string
	errs   []fieldError
	reason handlers.Reason // why it was refused, when it was
	ack    *jetstream.PubAck
}

// metricResult labels the event in kdsync_ingress_events_total.
func (e *pending) metricResult() string {
	switch {
	case e.status == http.StatusAccepted && e.ack != nil && e.ack.Duplicate:
		return resultDuplicate
	case e.status == http.StatusConflict:
		return resultConflict
	case e.status == http.StatusAccepted:
		return resultAccepted
	case e.reason != "":
		return string(e.reason)
	case e.status == http.StatusRequestEntityTooLarge:
		return string(handlers.ReasonTooLarge)
	}
	return resultUnavailable
}

// single converts the request of a structured or binary event.
func (h *Handler) single(md mode, header http.Header, body []byte) *pending {
	if md == modeBinary {
		hdr, ie := binaryHeaders(header)
		if ie != nil {
			e := &pending{}
			e.refuse(ie, "", binaryPointer)
			return e
		}
		return h.convert(hdr, body, binaryPointer)
	}
	return h.convert(nats.Header{}, body, structuredPointer(""))
}

// batch splits a batch into its events.
func (h *Handler) batch(body []byte) ([]*pending, *problem) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, invalidBatch("the body must be a JSON array of CloudEvents: " + err.Error())
	}
	if len(raw) == 0 {
		return nil, invalidBatch("the batch holds no event")
	}
	if len(raw) > h.opts.MaxBatch {
		return nil, tooLarge(fmt.Sprintf("the batch holds %d events, the limit is %d: split it", len(raw), h.opts.MaxBatch))
	}
	evs := make([]*pending, len(raw))
	for i, r := range raw {
		e := h.convert(nats.Header{}, r, structuredPointer("/"+strconv.Itoa(i)))
		e.index = i
		evs[i] = e
	}
	return evs, nil
}

// convert checks one event with the consumer's decoder and builds its
// message: subject <prefix>.<action>.<userId>, Nats-Msg-Id = the event's
// key (handlers.EventKey: source and id).
func (h *Handler) convert(hdr nats.Header, body []byte, ptr func(string) string) *pending {
	e := &pending{}
	ev, err := h.opts.Decoder.Decode("", hdr, body)
	if err != nil {
		var ie *handlers.InputError
		if !errors.As(err, &ie) {
			ie = &handlers.InputError{Reason: handlers.ReasonMalformed, Detail: err.Error()}
		}
		e.refuse(ie, ie.EventID, ptr)
		return e
	}
	e.id = ev.ID
	if hasControl(ev.ID) {
		// It becomes the Nats-Msg-Id header, which cannot carry them.
		field := "id"
		if ev.Binary {
			field = "ce-id"
		}
		e.refuse(&handlers.InputError{Reason: handlers.ReasonInvalidField, Field: field,
			Detail: "must not contain control characters (it becomes the Nats-Msg-Id header)"}, ev.ID, ptr)
		return e
	}
	hdr.Set(jetstream.MsgIDHeader, ev.Key())
	e.ev = ev
	e.msg = &nats.Msg{
		Subject: h.opts.SubjectPrefix + "." + string(ev.Action) + "." + ev.UserID,
		Header:  hdr,
		Data:    body,
	}
	return e
}

// refuse records why an event is not published.
func (e *pending) refuse(ie *handlers.InputError, id string, ptr func(string) string) {
	e.id, e.reason = id, ie.Reason
	e.status = http.StatusBadRequest
	switch {
	case ie.Reason == handlers.ReasonTooLarge:
		e.status = http.StatusRequestEntityTooLarge
	case ie.Field == "content-type":
		e.status = http.StatusUnsupportedMediaType
	}
	e.detail = ie.Error()
	e.errs = []fieldError{{Field: ie.Field, Pointer: ptr(ie.Field), Reason: string(ie.Reason), Detail: ie.Detail}}
}

// publish stores the events that passed the checks, all at once, and
// waits for JetStream's acknowledgements. An event without one is marked
// 503: the sender must retry it, and Nats-Msg-Id makes the retry safe.
func (h *Handler) publish(ctx context.Context, evs []*pending) {
	type inflight struct {
		e *pending
		f jetstream.PubAckFuture
	}
	var futs []inflight
	connected := h.opts.Conn.IsConnected()
	for _, e := range evs {
		if e.msg == nil {
			continue
		}
		if !connected {
			e.unavailable("NATS is not connected")
			continue
		}
		f, err := h.js.PublishMsgAsync(e.msg)
		if err != nil {
			e.publishFailed(err)
			continue
		}
		futs = append(futs, inflight{e, f})
	}
	if len(futs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.PublishTimeout)
	defer cancel()
	var dups []*pending
	for _, in := range futs {
		select {
		case ack := <-in.f.Ok():
			in.e.status, in.e.ack = http.StatusAccepted, ack
			if ack.Duplicate {
				dups = append(dups, in.e)
			}
		case err := <-in.f.Err():
			in.e.publishFailed(err)
		case <-ctx.Done():
			in.e.unavailable("no acknowledgement from JetStream within " + h.opts.PublishTimeout.String())
		}
	}
	h.checkDuplicates(ctx, dups)
}

// checkDuplicates looks at what the stream stored earlier under each
// duplicate's key (source and id): the same event sent again is answered
// 202 as stored, but another event under the same key gets 409, rather
// than being dropped unseen. A stored event that cannot be read any more
// (the stream's limits removed it) is taken to be the same.
func (h *Handler) checkDuplicates(ctx context.Context, dups []*pending) {
	streams := map[string]jetstream.Stream{}
	for _, e := range dups {
		st, ok := streams[e.ack.Stream]
		if !ok {
			var err error
			if st, err = h.js.Stream(ctx, e.ack.Stream); err != nil {
				h.log.Warn("ingress: cannot compare a duplicate with the stored event", "id", e.id, "stream", e.ack.Stream, "err", err)
				st = nil
			}
			streams[e.ack.Stream] = st
		}
		if st == nil {
			continue
		}
		stored, err := st.GetMsg(ctx, e.ack.Sequence)
		if err != nil {
			h.log.Warn("ingress: cannot compare a duplicate with the stored event", "id", e.id, "sequence", e.ack.Sequence, "err", err)
			continue
		}
		if diff := h.differs(e, stored); diff != "" {
			e.status = http.StatusConflict
			e.detail = fmt.Sprintf("not stored: an event with source %q and id %q was stored earlier (sequence %d) with other content (%s); give a new event a new id",
				e.ev.Source, e.ev.ID, e.ack.Sequence, diff)
			e.errs = []fieldError{{Field: "id", Reason: resultConflict, Detail: e.detail}}
		}
	}
}

// differs names what tells the stored message apart from e's event, ""
// when it is the same event: the same action, user and fields, however
// encoded (the content mode, the order of members and spacing may
// differ between a sender's retries).
func (h *Handler) differs(e *pending, stored *jetstream.RawStreamMsg) string {
	old, err := h.opts.Decoder.Decode("", stored.Header, stored.Data)
	if err != nil {
		return "the stored event is not a valid event"
	}
	ev := e.ev
	switch {
	case old.Action != ev.Action:
		return "type " + old.Type + " stored, " + ev.Type + " sent"
	case old.UserID != ev.UserID:
		return "another data.userId"
	case !equalPtr(old.DeptID, ev.DeptID):
		return "another data.deptId"
	case !equalPtr(old.Role, ev.Role):
		return "another data.role"
	case !equalPtr(old.Status, ev.Status):
		return "another data.status"
	case old.Name != ev.Name:
		return "another data.name"
	case !old.Time.Equal(ev.Time):
		return "another time"
	}
	return ""
}

func equalPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func (e *pending) unavailable(detail string) {
	e.status, e.detail = http.StatusServiceUnavailable, "not stored: "+detail
}

// publishFailed classifies a failed publish: too large for NATS or the
// stream (a 413 the sender must not retry), anything else unavailable.
func (e *pending) publishFailed(err error) {
	var ae *jetstream.APIError
	if errors.Is(err, nats.ErrMaxPayload) || errors.As(err, &ae) && ae.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		e.status, e.reason = http.StatusRequestEntityTooLarge, handlers.ReasonTooLarge
		e.detail = "not stored: the event is larger than NATS or the stream accepts: " + err.Error()
		return
	}
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		e.unavailable("no stream answered (JetStream down, or no stream stores the subject)")
		return
	}
	e.unavailable(err.Error())
}

// binaryHeaders maps the HTTP request's ce-* headers to NATS headers,
// percent-decoding their values as the HTTP binding asks, and the
// Content-Type to content-type. The attributes kdsync reads are decoded
// strictly; extension attributes it does not read are passed through, not
// judged: decoded where their encoding is valid, else kept as sent (senders
// such as the JavaScript SDK leave a "%" in "50% FTE" unencoded).
func binaryHeaders(h http.Header) (nats.Header, *handlers.InputError) {
	out := nats.Header{}
	for k, vs := range h {
		lk := strings.ToLower(k)
		if !strings.HasPrefix(lk, "ce-") {
			continue
		}
		read := readAttribute(lk)
		for _, v := range vs {
			dv, ok := percentDecode(v)
			switch {
			case !read && (!ok || hasControl(dv) || !utf8.ValidString(dv)):
				dv = v
			case !ok:
				return nil, &handlers.InputError{Reason: handlers.ReasonInvalidField, Field: lk, Detail: "malformed percent-encoding"}
			case hasControl(dv):
				return nil, &handlers.InputError{Reason: handlers.ReasonInvalidField, Field: lk, Detail: "must not contain control characters"}
			}
			out[lk] = append(out[lk], dv)
		}
	}
	if ct := h.Values("Content-Type"); len(ct) > 0 {
		out["content-type"] = ct
	}
	return out, nil
}

// readAttribute reports whether kdsync reads the binary-mode header lk.
func readAttribute(lk string) bool {
	switch lk {
	case "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time":
		return true
	}
	return false
}

// percentDecode undoes the HTTP binding's percent-encoding of header
// values (%XX, UTF-8 bytes); "+" stays as it is.
func percentDecode(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// hasControl reports whether s holds a control character: C0, DEL or C1
// (U+0080 to U+009F, such as U+0085 NEXT LINE).
func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// structuredPointer maps a decoder field name (data.deptId) to a JSON
// pointer into the request body (#/data/deptId), below base (a batch
// element's "/<index>").
func structuredPointer(base string) func(string) string {
	return func(field string) string {
		if field == "" {
			if base == "" {
				return ""
			}
			return "#" + base
		}
		return "#" + base + "/" + strings.ReplaceAll(field, ".", "/")
	}
}

// binaryPointer maps a decoder field name to a JSON pointer into a binary
// request's body, which is data: data.deptId is #/deptId. Header fields
// (ce-id, content-type) have none.
func binaryPointer(field string) string {
	switch {
	case field == "data":
		return "#"
	case strings.HasPrefix(field, "data."):
		return "#/" + strings.ReplaceAll(strings.TrimPrefix(field, "data."), ".", "/")
	}
	return ""
}
