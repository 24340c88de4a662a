package redact_test

import (
	"strings"
	"testing"

	"github.com/kdsync/kdsync/redact"
)

func TestURL(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, want, secret string }{
		"token as user":       {"nats://s3cr3tTOKEN@nats-1:4222", "nats://xxxxx@nats-1:4222", "s3cr3tTOKEN"},
		"user and password":   {"nats://kdsync:pa55word@nats-1:4222", "nats://kdsync:xxxxx@nats-1:4222", "pa55word"},
		"query":               {"https://kd.example.com/x?token=QUERYSECRET", "https://kd.example.com/x?xxxxx", "QUERYSECRET"},
		"empty password":      {"nats://tok:@h:1", "nats://tok:xxxxx@h:1", ""},
		"fragment":            {"https://h/#access_token=FRAG", "https://h/#xxxxx", "FRAG"},
		"nothing secret":      {"nats://127.0.0.1:4222", "nats://127.0.0.1:4222", ""},
		"unparseable":         {"http://user:pw-secret@[::1", "<unparseable URL xxxxx>", "pw-secret"},
		"escaped token":       {"nats://a%2Fb%40c@h:1", "nats://xxxxx@h:1", "a%2Fb"},
		"bare host and token": {"tok3n@h:4222", "", "tok3n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := redact.URL(tc.in)
			if tc.want != "" && got != tc.want {
				t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if tc.secret != "" && strings.Contains(got, tc.secret) {
				t.Errorf("URL(%q) = %q shows the secret", tc.in, got)
			}
		})
	}
}

func TestURLs(t *testing.T) {
	t.Parallel()
	got := redact.URLs("nats://t1@a:1, nats://u:p2@b:2 nats://c:3")
	if want := "nats://xxxxx@a:1,nats://u:xxxxx@b:2,nats://c:3"; got != want {
		t.Errorf("URLs = %q, want %q", got, want)
	}
}
