package service_test

import (
	"strings"
	"testing"

	"github.com/kdsync/kdsync/console"
	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/service"
)

// TestValidate: configuration errors, the consumer's included, are found
// before anything is dialled, all of them at once.
func TestValidate(t *testing.T) {
	base := func() service.Options {
		return service.Options{APIBaseURL: "https://kd.example", APIToken: "t"}
	}
	tests := map[string]struct {
		edit func(*service.Options)
		want []string // substrings of the error; none: valid
	}{
		"defaults":                     {func(*service.Options) {}, nil},
		"concurrency 0 is the default": {func(o *service.Options) { o.Consumer.Concurrency = 0 }, nil},
		"negative concurrency": {
			func(o *service.Options) { o.Consumer.Concurrency = -1 },
			[]string{"concurrency -1: must be at least 1"},
		},
		"ack window below concurrency": {
			func(o *service.Options) { o.Consumer.Concurrency, o.Consumer.MaxAckPending = 64, 10 },
			[]string{"max ack pending 10: must be at least the concurrency 64"},
		},
		"several at once": {
			func(o *service.Options) {
				o.APIBaseURL = ""
				o.Consumer.Partitions = -2
				o.Consumer.PullBatch = -1
			},
			[]string{"KDSYNC_API_BASE_URL", "partitions -2", "pull batch -1"},
		},
		"console token too short": {
			func(o *service.Options) { o.Console.Addr, o.Console.Options.Token = "127.0.0.1:0", "short" },
			[]string{"KDSYNC_CONSOLE_TOKEN must be at least 16"},
		},
		"console off needs no token": {func(o *service.Options) { o.Console.Options.Token = "short" }, nil},
		"console OIDC incomplete": {
			func(o *service.Options) {
				o.Console.Addr, o.Console.Options.Token = "127.0.0.1:0", "console-token-0123456789"
				o.Console.Options.OIDC = &console.OIDC{Issuer: "https://idp.example", ClientID: "c", RedirectURL: "https://console.example/cb"}
			},
			[]string{"must end in /login/callback", "allowed to sign in"},
		},
		"two authentications": {
			func(o *service.Options) { o.AppID = "a" },
			[]string{"choose one authentication"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			o := base()
			o.Consumer = consumer.Options{}
			tt.edit(&o)
			err := o.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v\nwant it to mention %q", err, w)
				}
			}
		})
	}
}
