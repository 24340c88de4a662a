package kdapi_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kdsync/kdsync/kdapi"
)

func TestConfigCheck(t *testing.T) {
	for name, tc := range map[string]struct {
		c    kdapi.Config
		want error
	}{
		"app":     {kdapi.Config{AppID: "a", AppSecret: "s", UserID: "u"}, nil},
		"token":   {kdapi.Config{Token: "t"}, nil},
		"both":    {kdapi.Config{AppID: "a", Token: "t"}, kdapi.ErrAuthBoth},
		"neither": {kdapi.Config{BaseURL: "http://x"}, kdapi.ErrAuthMissing},
	} {
		if err := tc.c.Check(); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// TestConfigOptions: a client built from a Config calls its base URL with
// its authentication.
func TestConfigOptions(t *testing.T) {
	var mu sync.Mutex
	var auth, appID string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth, appID = r.Header.Get("Authorization"), r.Header.Get("X-App-Id")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"code":"0","departments":[]}`))
	}))
	defer srv.Close()
	for name, tc := range map[string]struct {
		c        kdapi.Config
		wantAuth string
	}{
		"token": {kdapi.Config{BaseURL: srv.URL, Token: "tok-123"}, "tok-123"},
		"app":   {kdapi.Config{BaseURL: srv.URL, AppID: "app-1", AppSecret: "secret-0123456789", UserID: "42"}, ""},
	} {
		mu.Lock()
		auth, appID = "", ""
		mu.Unlock()
		c, err := kdapi.NewClient(tc.c.Options()...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// The answer's shape does not matter here, only the request.
		_, _ = c.ListDepartments(t.Context(), kdapi.ListDepartmentsOptions{})
		mu.Lock()
		gotAuth, gotApp := auth, appID
		mu.Unlock()
		switch {
		case tc.wantAuth != "" && !strings.Contains(gotAuth, tc.wantAuth):
			t.Errorf("%s: Authorization %q, want it to carry %q", name, gotAuth, tc.wantAuth)
		case tc.wantAuth == "" && gotAuth == "":
			t.Errorf("%s: no Authorization header (app id header %q)", name, gotApp)
		}
	}
}
