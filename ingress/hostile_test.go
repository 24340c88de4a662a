package ingress

import (
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
)

// TestCompressedBodyRefused: a gzip-encoded body is refused as an
// unsupported content encoding (415), not read as bad UTF-8.
func TestCompressedBodyRefused(t *testing.T) {
	e := newEnv(t, nil)
	r := structured(newEvent("gz-1", handlers.Hired, "1001")).bearer(testToken)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(r.body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	r.body = buf.Bytes()
	r.header.Set("Content-Encoding", "gzip")
	resp := e.post(r)
	if resp.status != http.StatusUnsupportedMediaType || len(resp.problem.Errors) != 1 || resp.problem.Errors[0].Field != "content-encoding" ||
		!strings.Contains(resp.problem.Detail, "gzip") {
		t.Errorf("gzip body: %d %s, want 415 naming content-encoding gzip", resp.status, resp.body)
	}
	r = structured(newEvent("gz-2", handlers.Hired, "1001")).bearer(testToken)
	r.header.Set("Content-Encoding", "identity")
	if resp := e.post(r); resp.status != http.StatusAccepted {
		t.Errorf("Content-Encoding identity: %d %s, want 202", resp.status, resp.body)
	}
}

// TestTimestampInMilliseconds: a Standard Webhooks timestamp sent in
// milliseconds is refused with words that say so, and other far times
// with a sensible distance.
func TestTimestampInMilliseconds(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return now } })
	good := structured(newEvent("ms-1", handlers.Hired, "1001"))
	for ts, want := range map[string]string{
		fmt.Sprint(now.UnixMilli()):            "looks like milliseconds",
		fmt.Sprint(now.Unix() - 3*24*3600):     "72h0m0s away",
		fmt.Sprint(now.Unix() + 500*365*86400): "about 500 years",
		"-5":                                   "before 1970",
	} {
		r := good.signedAs(t, testSecret, "msg_"+ts, ts)
		resp := e.post(r)
		if resp.status != http.StatusUnauthorized || !strings.Contains(resp.problem.Detail, want) {
			t.Errorf("timestamp %s: %d %q, want 401 saying %q", ts, resp.status, resp.problem.Detail, want)
		}
	}
}

// signedAs signs r as a Standard Webhooks sender would, with ts as the
// webhook-timestamp exactly as given (the library takes a time.Time).
func (r request) signedAs(t *testing.T, secret, id, ts string) request {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(r.body)))
	r.header = r.header.Clone()
	r.header.Set("Webhook-Id", id)
	r.header.Set("Webhook-Timestamp", ts)
	r.header.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	return r
}

// TestControlCharactersInID: C1 control characters (U+0085) are refused
// in an id, as C0 ones are.
func TestControlCharactersInID(t *testing.T) {
	e := newEnv(t, nil)
	for _, id := range []string{"a\u0085b", "a\u009fb", "a\u007fb"} {
		resp := e.post(structured(newEvent(id, handlers.Hired, "1001")).bearer(testToken))
		if resp.status != http.StatusBadRequest || !strings.Contains(string(resp.body), "control characters") {
			t.Errorf("id %q: %d %s, want 400 naming control characters", id, resp.status, resp.body)
		}
	}
	if n := len(e.stored()); n != 0 {
		t.Errorf("%d events stored, want none", n)
	}
}

// TestSlowStrangerAnsweredAtOnce: a request without credentials whose
// body trickles in is answered 401 at once and its connection closed,
// rather than held until the server's read timeout.
func TestSlowStrangerAnsweredAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	srv := NewServer(e.srv.Config.Handler, time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A declared body of 100 KiB, of which only a few bytes are sent.
	fmt.Fprintf(conn, "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n{\"spec", mediaStructured, 100<<10)
	start := time.Now()
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn) // until the server closes
	took := time.Since(start)
	if err != nil {
		t.Fatalf("reading the answer: %v (after %s; the server kept the connection open)", err, took)
	}
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 401")) {
		t.Fatalf("answer %q, want 401", answer)
	}
	if took > 10*time.Second {
		t.Errorf("the 401 and close took %s; the server waited for the body", took)
	}
	t.Logf("401 and close after %s", took)
}
