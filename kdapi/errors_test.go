package kdapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClassification drives one DELETE per case against a server answering
// with the given status, body and headers, and checks the class of the
// result. want nil means success.
func TestClassification(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		status  int
		body    string
		header  http.Header
		opts    []Option
		want    error
		code    string // the *APIError's Code, when want is not nil
		msgPart string // a substring of its Msg
	}{
		"200 code 0 number":   {status: 200, body: `{"code":0,"msg":"success"}`},
		"200 code 0 string":   {status: 200, body: `{"code":"0","msg":"success"}`},
		"200 code 00":         {status: 200, body: `{"code":"00"}`},
		"200 code 0.0":        {status: 200, body: `{"code":0.0}`},
		"200 code null":       {status: 200, body: `{"code":null,"msg":"success"}`},
		"200 no code":         {status: 200, body: `{"msg":"success"}`},
		"201 code 0":          {status: 201, body: `{"code":0}`},
		"204 no body":         {status: 204, body: ``},
		"200 non-zero code":   {status: 200, body: `{"code":13000102,"msg":"parameter verification failed"}`, want: ErrPermanent, code: "13000102", msgPart: "parameter verification"},
		"200 code 1 string":   {status: 200, body: `{"code":"1","msg":"failed"}`, want: ErrPermanent, code: "1"},
		"200 code word":       {status: 200, body: `{"code":"APIGW.0301","msg":"incorrect IAM authentication"}`, want: ErrPermanent, code: "APIGW.0301"},
		"200 HTML":            {status: 200, body: `<html>maintenance</html>`, want: ErrPermanent, msgPart: "malformed response"},
		"200 truncated JSON":  {status: 200, body: `{"code":0,"msg":"succ`, want: ErrPermanent, msgPart: "malformed response"},
		"200 JSON array":      {status: 200, body: `[{"code":0}]`, want: ErrPermanent, msgPart: "malformed response"},
		"200 JSON null":       {status: 200, body: `null`, want: ErrPermanent, msgPart: "malformed response"},
		"200 code bool":       {status: 200, body: `{"code":true}`, want: ErrPermanent, msgPart: "malformed response"},
		"200 empty":           {status: 200, body: ``, want: ErrPermanent, msgPart: "empty response body"},
		"200 blank":           {status: 200, body: " \n", want: ErrPermanent, msgPart: "empty response body"},
		"302 redirect":        {status: 302, body: ``, header: http.Header{"Location": {"https://elsewhere.example/"}}, want: ErrPermanent},
		"400 no body":         {status: 400, body: ``, want: ErrPermanent, msgPart: "Bad Request"},
		"400 documented code": {status: 400, body: `{"code":13000201,"msg":"x"}`, want: ErrPermanent, code: "13000201"},
		"405":                 {status: 405, body: ``, want: ErrPermanent},
		"422":                 {status: 422, body: `{"code":1}`, want: ErrPermanent},
		"408":                 {status: 408, body: ``, want: ErrRetryable},
		"429":                 {status: 429, body: `{"code":"429","msg":"slow down"}`, want: ErrRetryable},
		"500 HTML":            {status: 500, body: `<html>oops</html>`, want: ErrRetryable, msgPart: "Internal Server Error"},
		"500 code 0":          {status: 500, body: `{"code":0}`, want: ErrRetryable},
		"502":                 {status: 502, body: ``, want: ErrRetryable},
		"503":                 {status: 503, body: `{"code":503}`, want: ErrRetryable},
		"504":                 {status: 504, body: ``, want: ErrRetryable},
		"401":                 {status: 401, body: `{"code":401,"msg":"signature mismatch"}`, want: ErrAuth},
		"403":                 {status: 403, body: ``, want: ErrAuth},
		"404":                 {status: 404, body: `<html>`, want: ErrNotFound},
		"409":                 {status: 409, body: `{"code":409}`, want: ErrAlreadyExists},

		// Configured code lists; codes as JSON numbers and strings alike.
		"exists code number":      {status: 200, body: `{"code":13000501}`, want: ErrAlreadyExists, code: "13000501"},
		"exists code string":      {status: 400, body: `{"code":"13000501"}`, want: ErrAlreadyExists, code: "13000501"},
		"exists code exponent":    {status: 400, body: `{"code":1.3000501e7}`, want: ErrAlreadyExists, code: "13000501"},
		"exists code padded":      {status: 400, body: `{"code":" 013000501 "}`, want: ErrAlreadyExists, code: "13000501"},
		"not found 13000309":      {status: 400, body: `{"code":13000309,"msg":"resource does not exist"}`, want: ErrNotFound},
		"not found 13000502":      {status: 200, body: `{"code":"13000502"}`, want: ErrNotFound},
		"code beats status":       {status: 500, body: `{"code":13000501}`, want: ErrAlreadyExists},
		"custom auth code":        {status: 400, body: `{"code":13000201}`, opts: []Option{WithAuthCodes("13000201")}, want: ErrAuth},
		"custom retryable code":   {status: 200, body: `{"code":"13000999"}`, opts: []Option{WithRetryableCodes("13000999")}, want: ErrRetryable},
		"custom exists replaces":  {status: 400, body: `{"code":13000501}`, opts: []Option{WithAlreadyExistsCodes("777")}, want: ErrPermanent},
		"custom exists matches":   {status: 400, body: `{"code":777}`, opts: []Option{WithAlreadyExistsCodes("777")}, want: ErrAlreadyExists},
		"custom not found":        {status: 400, body: `{"code":"888"}`, opts: []Option{WithNotFoundCodes("888")}, want: ErrNotFound},
		"custom not found clears": {status: 400, body: `{"code":13000309}`, opts: []Option{WithNotFoundCodes()}, want: ErrPermanent},
		"code list normalised":    {status: 400, body: `{"code":42}`, opts: []Option{WithRetryableCodes("042")}, want: ErrRetryable},
		"code 0 in a list":        {status: 400, body: `{"code":0}`, opts: []Option{WithAlreadyExistsCodes("0")}, want: ErrPermanent},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t, tc.opts...)
			mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
				for k, vs := range tc.header {
					w.Header()[k] = vs
				}
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			})
			err := client.DeleteUser(t.Context(), "1")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("DeleteUser: %v, want success", err)
				}
				return
			}
			testClass(t, err, tc.want)
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v is not an *APIError", err, err)
			}
			if ae.HTTPStatus != tc.status || ae.Method != "DELETE" || ae.Path != APIPath+"/users/1" {
				t.Errorf("APIError = %+v", ae)
			}
			if tc.code != "" && ae.Code != tc.code {
				t.Errorf("Code = %q, want %q", ae.Code, tc.code)
			}
			if !strings.Contains(ae.Msg, tc.msgPart) {
				t.Errorf("Msg = %q, want it to contain %q", ae.Msg, tc.msgPart)
			}
			if c, ok := ClassOf(err); !ok || c != ae.Class || c.sentinel() != tc.want {
				t.Errorf("ClassOf = %v, %v; APIError.Class = %v", c, ok, ae.Class)
			}
		})
	}
}

func TestRetryAfter_Response(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	tests := map[string]struct {
		status   int
		value    string
		min, max time.Duration
	}{
		"429 seconds":     {429, "120", 120 * time.Second, 120 * time.Second},
		"503 HTTP-date":   {503, future, 59 * time.Minute, time.Hour},
		"503 past date":   {503, past, 0, 0},
		"429 no header":   {429, "", 0, 0},
		"429 garbage":     {429, "soon", 0, 0},
		"503 negative":    {503, "-5", 0, 0},
		"200 code + date": {200, "7", 7 * time.Second, 7 * time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
				if tc.value != "" {
					w.Header().Set("Retry-After", tc.value)
				}
				w.WriteHeader(tc.status)
				fmt.Fprint(w, `{"code":1,"msg":"busy"}`)
			})
			err := client.DeleteUser(t.Context(), "1")
			got := RetryAfterOf(err)
			if got < tc.min || got > tc.max {
				t.Errorf("RetryAfterOf = %v, want in [%v, %v]", got, tc.min, tc.max)
			}
			if got > 0 && !strings.Contains(err.Error(), "retry after") {
				t.Errorf("Error() = %q does not mention the retry delay", err)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		in   string
		want time.Duration
	}{
		"empty":              {"", 0},
		"zero":               {"0", 0},
		"seconds":            {"30", 30 * time.Second},
		"padded":             {" 5 ", 5 * time.Second},
		"negative":           {"-1", 0},
		"fraction":           {"1.5", 0},
		"huge is capped":     {"99999999999", 365 * 24 * time.Hour},
		"overflow":           {"999999999999999999999", 0},
		"IMF-fixdate future": {"Mon, 23 Nov 2026 10:02:00 GMT", 2 * time.Minute},
		"RFC 850 future":     {"Monday, 23-Nov-26 10:00:30 GMT", 30 * time.Second},
		"asctime future":     {"Mon Nov 23 10:01:00 2026", time.Minute},
		"date now":           {"Mon, 23 Nov 2026 10:00:00 GMT", 0},
		"date past":          {"Sun, 22 Nov 2026 10:00:00 GMT", 0},
		"garbage":            {"later", 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := ParseRetryAfter(tc.in, now); got != tc.want {
				t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestErrorsIsAs(t *testing.T) {
	t.Parallel()
	classes := []Class{ClassPermanent, ClassRetryable, ClassAuth, ClassNotFound, ClassAlreadyExists}
	for _, c := range classes {
		err := fmt.Errorf("handler: %w", &APIError{HTTPStatus: 400, Code: "1", Method: "PUT", Path: "/p", Class: c})
		testClass(t, err, c.sentinel())
		if got, ok := ClassOf(err); !ok || got != c {
			t.Errorf("ClassOf(wrapped %v) = %v, %v", c, got, ok)
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.Class != c {
			t.Errorf("errors.As through a wrapper failed for %v", c)
		}
	}

	cause := &dialError{syscall.ECONNREFUSED}
	te := &TransportError{Method: "GET", Path: "/p", Err: cause}
	testClass(t, te, ErrRetryable)
	if !errors.Is(te, syscall.ECONNREFUSED) {
		t.Error("TransportError does not unwrap to its cause")
	}
	if got := te.Error(); got != "kdapi: GET /p: connection refused" {
		t.Errorf("TransportError.Error() = %q", got)
	}
	if c, ok := ClassOf(te); !ok || c != ClassRetryable {
		t.Errorf("ClassOf(TransportError) = %v, %v", c, ok)
	}

	if c, ok := ClassOf(nil); ok || c != ClassPermanent {
		t.Errorf("ClassOf(nil) = %v, %v", c, ok)
	}
	if c, ok := ClassOf(io.EOF); !ok || c != ClassPermanent {
		t.Errorf("ClassOf(foreign error) = %v, %v", c, ok)
	}
	if RetryAfterOf(nil) != 0 || RetryAfterOf(te) != 0 {
		t.Error("RetryAfterOf of an error without one is not zero")
	}
	// A cancelled context is none of the classes (see the package doc).
	ctxErr := fmt.Errorf("kdapi: GET /p: %w", context.Canceled)
	if got := matchedSentinels(ctxErr); len(got) != 0 {
		t.Errorf("context error matches %v", got)
	}
}

// dialError stands in for a dial failure.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func TestAPIError_Error(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		err  *APIError
		want string
	}{
		"full":        {&APIError{HTTPStatus: 429, Code: "429", Msg: "slow down", Method: "PUT", Path: "/koodrive/ose/v1/users/1", RetryAfter: 2 * time.Second}, "kdapi: PUT /koodrive/ose/v1/users/1: HTTP 429 code 429: slow down (retry after 2s)"},
		"no code":     {&APIError{HTTPStatus: 500, Msg: "Internal Server Error", Method: "GET", Path: "/p"}, "kdapi: GET /p: HTTP 500: Internal Server Error"},
		"bare":        {&APIError{HTTPStatus: 200, Method: "GET", Path: "/p"}, "kdapi: GET /p: HTTP 200"},
		"code no msg": {&APIError{HTTPStatus: 200, Code: "1", Method: "GET", Path: "/p"}, "kdapi: GET /p: HTTP 200 code 1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAPIError_LongMessage: a huge server message is cut, on a rune
// boundary, so errors stay loggable.
func TestAPIError_LongMessage(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	long := strings.Repeat("\u00fc", 4000)
	mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"code":1,"msg":%q}`, long)
	})
	err := client.DeleteUser(t.Context(), "1")
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatal(err)
	}
	if len(ae.Msg) > maxMsgLen+len("…") || !strings.HasPrefix(long, strings.TrimSuffix(ae.Msg, "…")) || !strings.HasSuffix(ae.Msg, "…") {
		t.Errorf("Msg has %d bytes: %q", len(ae.Msg), ae.Msg)
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	for c, want := range map[Class]string{
		ClassPermanent: "permanent", ClassRetryable: "retryable", ClassAuth: "auth",
		ClassNotFound: "not_found", ClassAlreadyExists: "already_exists", Class(9): "class(9)",
	} {
		if got := c.String(); got != want {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), got, want)
		}
	}
	if Class(9).sentinel() != ErrPermanent {
		t.Error("an unknown class is not permanent")
	}
}

func TestCodeAndFlexTypes(t *testing.T) {
	t.Parallel()
	var env envelope
	for in, want := range map[string]Code{
		`{"code":0}`: "0", `{"code":"0"}`: "0", `{"code":-0}`: "0", `{"code":"13000501"}`: "13000501",
		`{"code":13000501}`: "13000501", `{"code":"APIGW.0101"}`: "APIGW.0101", `{"code":null}`: "", `{}`: "",
	} {
		env = envelope{}
		if err := jsonUnmarshal(in, &env); err != nil || env.Code != want {
			t.Errorf("%s: code %q, err %v; want %q", in, env.Code, err, want)
		}
	}
	for _, in := range []string{`{"code":true}`, `{"code":[0]}`, `{"code":{"v":0}}`, `{"total":"x"}`, `{"total":1.5}`, `{"total":true}`} {
		env = envelope{}
		if err := jsonUnmarshal(in, &env); err == nil {
			t.Errorf("%s decoded without error", in)
		}
	}
	var u User
	if err := jsonUnmarshal(`{"id":1316083732377070977,"role":"5","status":"","deptId":null}`, &u); err != nil {
		t.Fatal(err)
	}
	if u.ID != "1316083732377070977" || u.Role != 5 || u.Status != 0 || u.DeptID != "" {
		t.Errorf("User = %+v", u)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestClasses: Classes lists every class with a name, once.
func TestClasses(t *testing.T) {
	t.Parallel()
	if len(Classes) != len(classNames) {
		t.Fatalf("Classes %v, names %v", Classes, classNames)
	}
	seen := map[string]bool{}
	for _, c := range Classes {
		if s := c.String(); s != classNames[c] || seen[s] {
			t.Errorf("class %d: %q", c, s)
		}
		seen[c.String()] = true
	}
}
