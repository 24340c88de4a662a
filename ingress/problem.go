package ingress

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Problem types (RFC 9457), documented in docs/ingress.md.
const (
	typeInvalidEvent     = "urn:kdsync:problem:invalid-event"
	typeInvalidBatch     = "urn:kdsync:problem:invalid-batch"
	typeBadRequest       = "urn:kdsync:problem:bad-request"
	typeUnauthorized     = "urn:kdsync:problem:unauthorized"
	typeReplayed         = "urn:kdsync:problem:replayed-webhook"
	typeTooLarge         = "urn:kdsync:problem:too-large"
	typeUnsupportedMedia = "urn:kdsync:problem:unsupported-media-type"
	typeUnavailable      = "urn:kdsync:problem:unavailable"
	typeConflict         = "urn:kdsync:problem:conflict"
)

// problem is an RFC 9457 problem document, with kdsync's extension
// members errors (what is wrong, per field) and results (a batch's events).
type problem struct {
	Type    string        `json:"type"`
	Title   string        `json:"title"`
	Status  int           `json:"status"`
	Detail  string        `json:"detail,omitempty"`
	Errors  []fieldError  `json:"errors,omitempty"`
	Results []eventResult `json:"results,omitempty"`

	// authReason labels an authentication failure in the metrics.
	authReason string
	// challenge is the WWW-Authenticate value of a 401.
	challenge string
	// retryAfter is the Retry-After value of a 503.
	retryAfter string
}

// fieldError names what is wrong with an event.
type fieldError struct {
	// Index is the event's position in a batch.
	Index *int `json:"index,omitempty"`
	// Field is the decoder's name: data.deptId, type, ce-id, content-type.
	Field string `json:"field,omitempty"`
	// Pointer is a JSON pointer into the request body, when the field is
	// in it.
	Pointer string `json:"pointer,omitempty"`
	// Reason is the bad-input class (handlers.Reason).
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// eventResult is one event's fate in an answer.
type eventResult struct {
	Index     *int         `json:"index,omitempty"`
	ID        string       `json:"id,omitempty"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Subject   string       `json:"subject,omitempty"`
	Stream    string       `json:"stream,omitempty"`
	Sequence  uint64       `json:"sequence,omitempty"`
	Duplicate bool         `json:"duplicate,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`
}

func (e *pending) result(batch bool) eventResult {
	r := eventResult{ID: e.id, Status: e.status, Detail: e.detail, Errors: e.errs}
	if batch {
		i := e.index
		r.Index = &i
		for k := range r.Errors {
			r.Errors[k].Index = &i
		}
	}
	if e.ack != nil && e.status == http.StatusAccepted {
		r.Subject, r.Stream, r.Sequence, r.Duplicate = e.msg.Subject, e.ack.Stream, e.ack.Sequence, e.ack.Duplicate
		r.Detail = "stored"
		if e.ack.Duplicate {
			r.Detail = "stored earlier (same source, id and content): not stored again"
		}
	}
	return r
}

// writeSingle answers a structured or binary request: 202 with the event's
// result, or a problem.
func (h *Handler) writeSingle(w http.ResponseWriter, e *pending) int {
	if e.status == http.StatusAccepted {
		return writeJSON(w, http.StatusAccepted, "application/json", e.result(false))
	}
	p := &problem{Status: e.status, Detail: e.detail, Errors: e.errs}
	switch e.status {
	case http.StatusServiceUnavailable:
		p.Type, p.Title, p.retryAfter = typeUnavailable, "Event not stored: NATS unavailable; retry later", h.retryAfter()
	case http.StatusRequestEntityTooLarge:
		p.Type, p.Title = typeTooLarge, "Event too large"
	case http.StatusUnsupportedMediaType:
		p.Type, p.Title = typeUnsupportedMedia, "Unsupported content type"
	case http.StatusConflict:
		p.Type, p.Title = typeConflict, "Another event with this source and id was stored earlier"
	default:
		p.Type, p.Title = typeInvalidEvent, "Invalid event"
	}
	return h.writeProblem(w, p)
}

// writeBatch answers a batch: 202 when every event is stored; 503 with
// Retry-After when any could not be stored for want of NATS (resending the
// whole batch is safe); 400 when every event was refused; else 207. The
// body always lists each event's fate.
func (h *Handler) writeBatch(w http.ResponseWriter, evs []*pending) int {
	results := make([]eventResult, len(evs))
	var stored, unavailable int
	var errs []fieldError
	for i, e := range evs {
		results[i] = e.result(true)
		switch e.status {
		case http.StatusAccepted:
			stored++
		case http.StatusServiceUnavailable:
			unavailable++
		default:
			errs = append(errs, results[i].Errors...)
		}
	}
	type batchAnswer struct {
		Detail  string        `json:"detail"`
		Results []eventResult `json:"results"`
	}
	refused := len(evs) - stored - unavailable
	summary := fmt.Sprintf("%d of %d events stored, %d refused, %d not stored for want of NATS", stored, len(evs), refused, unavailable)
	switch {
	case stored == len(evs):
		return writeJSON(w, http.StatusAccepted, "application/json", batchAnswer{summary, results})
	case unavailable > 0:
		return h.writeProblem(w, &problem{Type: typeUnavailable, Title: "Events not stored: NATS unavailable; resend the batch later",
			Status: http.StatusServiceUnavailable, Detail: summary, Errors: errs, Results: results, retryAfter: h.retryAfter()})
	case stored == 0:
		return h.writeProblem(w, &problem{Type: typeInvalidBatch, Title: "No event of the batch is valid",
			Status: http.StatusBadRequest, Detail: summary, Errors: errs, Results: results})
	}
	return writeJSON(w, http.StatusMultiStatus, "application/json", batchAnswer{summary, results})
}

// writeProblem sends p as application/problem+json.
func (h *Handler) writeProblem(w http.ResponseWriter, p *problem) int {
	if p.challenge != "" {
		w.Header().Set("WWW-Authenticate", p.challenge)
	}
	if p.retryAfter != "" {
		w.Header().Set("Retry-After", p.retryAfter)
	}
	return writeJSON(w, p.Status, "application/problem+json", p)
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		status, contentType = http.StatusInternalServerError, "application/problem+json"
		b = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return status
}

func tooLarge(detail string) *problem {
	return &problem{Type: typeTooLarge, Title: "Request body too large", Status: http.StatusRequestEntityTooLarge, Detail: detail}
}

func invalidBatch(detail string) *problem {
	return &problem{Type: typeInvalidBatch, Title: "Invalid batch", Status: http.StatusBadRequest, Detail: detail,
		Errors: []fieldError{{Pointer: "#", Reason: "malformed_json", Detail: detail}}}
}

func unsupportedEncoding(enc string) *problem {
	return &problem{Type: typeUnsupportedMedia, Title: "Unsupported content encoding", Status: http.StatusUnsupportedMediaType,
		Detail: fmt.Sprintf("Content-Encoding %q is not supported: send the body uncompressed", enc),
		Errors: []fieldError{{Field: "content-encoding", Reason: "invalid_field", Detail: "only identity (no encoding) is accepted"}}}
}

func unsupportedMedia(ct string) *problem {
	return &problem{Type: typeUnsupportedMedia, Title: "Unsupported content type", Status: http.StatusUnsupportedMediaType,
		Detail: fmt.Sprintf("Content-Type %q with no ce-specversion header: send %s (structured), %s (batch), or binary mode with ce-* headers and an application/json body",
			ct, mediaStructured, mediaBatch),
		Errors: []fieldError{{Field: "content-type", Reason: "invalid_field", Detail: "not a CloudEvents content mode"}}}
}
