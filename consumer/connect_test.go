package consumer

import (
	"strings"
	"testing"
)

func TestConnectOptionsCheck(t *testing.T) {
	tests := map[string]struct {
		urls string
		want string // "" for none
	}{
		"nats":               {"nats://127.0.0.1:4222", ""},
		"several, any sep":   {"nats://a:1, tls://b:2 ws://c:3,wss://d:4", ""},
		"host and port only": {"127.0.0.1:4222", ""},
		"http":               {"http://s3cr3t@127.0.0.1:4222", "scheme must be nats://"},
		"https among others": {"nats://a:1,https://b:2", "not \"https://\""},
		"no host":            {"nats://", "has no host"},
		"unparseable":        {"nats://user:pw-s3cr3t@[::1", "does not parse"},
	}
	for name, tc := range tests {
		err := ConnectOptions{URLs: tc.urls}.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want no error", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
	if _, err := Connect(ConnectOptions{URLs: "http://127.0.0.1:4222"}, nil, nil); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Errorf("Connect to an http URL: %v, want a refusal naming the scheme", err)
	}
}
