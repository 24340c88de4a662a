package kdapi

import (
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// Config is a client's configuration as kdsync's flags and variables give
// it (kdsync run, reconcile, user, sync build their clients from it).
type Config struct {
	BaseURL string
	// App authentication: all three; or Token, a bearer token.
	AppID     string
	AppSecret Secret
	UserID    string
	Token     Secret
	Timeout   time.Duration // of one call; 0: the client's default
	Language  string        // empty: the client's default
	// AlreadyExists and NotFound are KooDrive's codes for those answers;
	// nil: the client's defaults.
	AlreadyExists, NotFound []string
	MaxConns                int // 0: the client's default
}

// ErrAuthBoth and ErrAuthMissing are what Check reports.
var (
	ErrAuthBoth    = errors.New("choose one KooDrive authentication: app (app id, app secret, user id) or a bearer token")
	ErrAuthMissing = errors.New("KooDrive authentication is required: app id, app secret and user id, or a bearer token")
)

// Check reports authentication given twice (ErrAuthBoth) or not at all
// (ErrAuthMissing).
func (c Config) Check() error {
	app := c.AppID != "" || c.AppSecret != "" || c.UserID != ""
	switch {
	case app && c.Token != "":
		return ErrAuthBoth
	case !app && c.Token == "":
		return ErrAuthMissing
	}
	return nil
}

// Options are the client options c gives; a token wins over app
// authentication (Check says when both are given).
func (c Config) Options() []Option {
	opts := []Option{WithBaseURL(c.BaseURL)}
	if c.MaxConns > 0 {
		opts = append(opts, WithMaxConns(c.MaxConns))
	}
	if c.Timeout > 0 {
		opts = append(opts, WithTimeout(c.Timeout))
	}
	if c.Language != "" {
		opts = append(opts, WithLanguage(c.Language))
	}
	if c.AlreadyExists != nil {
		opts = append(opts, WithAlreadyExistsCodes(c.AlreadyExists...))
	}
	if c.NotFound != nil {
		opts = append(opts, WithNotFoundCodes(c.NotFound...))
	}
	switch {
	case c.Token != "":
		opts = append(opts, WithBearer(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: c.Token.Reveal()})))
	case c.AppID != "":
		opts = append(opts, WithAppAuth(c.AppID, c.AppSecret, c.UserID))
	}
	return opts
}
