package scim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The SCIM message schemas (RFC 7644).
const (
	errorSchema    = "urn:ietf:params:scim:api:messages:2.0:Error"
	listSchema     = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	patchOpSchema  = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	mediaType      = "application/scim+json"
	scimTypeNone   = ""
	invalidFilter  = "invalidFilter"
	invalidSyntax  = "invalidSyntax"
	invalidPath    = "invalidPath"
	invalidValue   = "invalidValue"
	noTarget       = "noTarget"
	mutability     = "mutability"
	uniqueness     = "uniqueness"
	tooMany        = "tooMany"
	invalidVersion = "invalidVers"
)

// Error is a SCIM error document (RFC 7644 section 3.12). Handlers return
// it; the server writes it with its status.
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string {
	if e.ScimType == "" {
		return fmt.Sprintf("scim %d: %s", e.Status, e.Detail)
	}
	return fmt.Sprintf("scim %d %s: %s", e.Status, e.ScimType, e.Detail)
}

func errf(status int, scimType, format string, args ...any) *Error {
	return &Error{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

func badRequest(scimType, format string, args ...any) *Error {
	return errf(http.StatusBadRequest, scimType, format, args...)
}

func notFound(kind, id string) *Error {
	return errf(http.StatusNotFound, scimTypeNone, "%s %q not found", kind, id)
}

// errUnavailable marks a failure of NATS (the KV bucket or the stream):
// the client is answered 503 and should retry.
var errUnavailable = errors.New("NATS unavailable")

// unavailable wraps a NATS error as errUnavailable, so that callers can
// tell it from a refusal.
func unavailable(what string, err error) error {
	return fmt.Errorf("%s: %w: %w", what, errUnavailable, err)
}

// isUnavailable reports whether a JetStream error means NATS is down or
// slow (as opposed to a conflict or a missing key).
func isUnavailable(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// errorDoc is the JSON of an Error.
type errorDoc struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail"`
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	var se *Error
	switch {
	case errors.As(err, &se):
	case errors.Is(err, errUnavailable):
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter))
		se = &Error{Status: http.StatusServiceUnavailable, Detail: "not stored: " + err.Error() + "; retry later"}
	default:
		s.log.Error("scim: request failed", "err", err)
		se = &Error{Status: http.StatusInternalServerError, Detail: err.Error()}
	}
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(se.Status)
	_ = json.NewEncoder(w).Encode(errorDoc{Schemas: []string{errorSchema}, Status: strconv.Itoa(se.Status), ScimType: se.ScimType, Detail: se.Detail})
}
