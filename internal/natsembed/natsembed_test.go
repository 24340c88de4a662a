package natsembed

import (
	"testing"

	"github.com/nats-io/nats.go"
)

func TestCredentialsAndRestart(t *testing.T) {
	cases := map[string]struct {
		opts      Options
		good, bad nats.Option
	}{
		"token":         {Options{Token: "t0ken"}, nats.Token("t0ken"), nats.Token("wrong")},
		"user password": {Options{User: "u", Password: "pw"}, nats.UserInfo("u", "pw"), nats.UserInfo("u", "wrong")},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.opts.StoreDir = t.TempDir()
			s, err := Start(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			if nc, err := nats.Connect(s.URL(), nats.MaxReconnects(0)); err == nil {
				nc.Close()
				t.Fatal("connected without credentials")
			}
			if nc, err := nats.Connect(s.URL(), tc.bad, nats.MaxReconnects(0)); err == nil {
				nc.Close()
				t.Fatal("connected with wrong credentials")
			}
			// Restart keeps the port and the credentials.
			url := s.URL()
			if err := s.Restart(); err != nil {
				t.Fatal(err)
			}
			if s.URL() != url {
				t.Fatalf("URL %s after restart, was %s", s.URL(), url)
			}
			nc, err := nats.Connect(s.URL(), tc.good)
			if err != nil {
				t.Fatal(err)
			}
			nc.Close()
		})
	}
}
