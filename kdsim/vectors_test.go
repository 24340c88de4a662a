package kdsim_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

// vectorsFile holds kdapi's golden signing vectors, produced by an
// independent Python signer (kdapi/testdata/sign.py).
const vectorsFile = "../kdapi/testdata/sign_vectors.json"

// TestGoldenVectors checks that the simulator accepts every request of the
// golden vectors with the Python signer's Authorization header, and refuses
// it when one byte of the signature changes.
func TestGoldenVectors(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("golden vectors: %v", err)
	}
	var doc struct {
		Vectors []struct {
			Name    string `json:"name"`
			AppID   string `json:"app_id"`
			Secret  string `json:"secret"`
			Request struct {
				Method  string      `json:"method"`
				URL     string      `json:"url"`
				Headers [][2]string `json:"headers"`
				Body    string      `json:"body"`
			} `json:"request"`
			Expected struct {
				Authorization string `json:"authorization"`
			} `json:"expected"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) < 5 {
		t.Fatalf("only %d vectors", len(doc.Vectors))
	}
	for _, v := range doc.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			var xdate string
			build := func(auth string) *http.Request {
				r := httptest.NewRequest(v.Request.Method, v.Request.URL, strings.NewReader(v.Request.Body))
				for _, h := range v.Request.Headers {
					if strings.EqualFold(h[0], "host") {
						r.Host = h[1]
						continue
					}
					r.Header.Set(h[0], h[1])
					if strings.EqualFold(h[0], "x-date") {
						xdate = strings.TrimSpace(h[1])
					}
				}
				r.Header.Set("Authorization", auth)
				return r
			}
			r := build(v.Expected.Authorization)
			at, err := time.Parse(kdapi.DateFormat, xdate)
			if err != nil {
				t.Fatalf("X-Date %q: %v", xdate, err)
			}
			srv, err := kdsim.New(kdsim.Options{AppID: v.AppID, AppSecret: kdapi.Secret(v.Secret), Now: func() time.Time { return at }})
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			if w.Code == http.StatusUnauthorized {
				t.Fatalf("refused a request signed by the Python signer: %s", w.Body)
			}
			if !strings.HasPrefix(r.URL.Path, kdapi.APIPath+"/") {
				// Outside the API: answered 404 before authentication.
				if w.Code != http.StatusNotFound {
					t.Errorf("path %q: %d %s", r.URL.Path, w.Code, w.Body)
				}
				return
			}

			// Flip the last hex digit of the signature.
			auth := v.Expected.Authorization
			last := auth[len(auth)-1]
			flipped := auth[:len(auth)-1] + map[bool]string{true: "1", false: "0"}[last == '0']
			w = httptest.NewRecorder()
			srv.ServeHTTP(w, build(flipped))
			if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "signature mismatch") {
				t.Errorf("tampered signature: %d %s", w.Code, w.Body)
			}
		})
	}
}
