// Package redact removes credentials from URLs before they reach a log
// line, an error or a metric label.
//
// A URL can carry a secret in three places: the password of user:password@,
// a token given as the user alone (nats://TOKEN@host, as NATS accepts), and
// the query string (?token=...). net/url's Redacted hides only the first.
package redact

import (
	"net/url"
	"strings"
)

// Mask replaces a secret.
const Mask = "xxxxx"

// URL returns s with its user info and query masked: user:password@ keeps
// the user, a lone user (a token) is masked whole, and a query becomes
// ?xxxxx. A string that does not parse as a URL is masked whole, as it may
// hold a secret anywhere.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparseable URL " + Mask + ">"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Mask)
		} else {
			u.User = url.User(Mask)
		}
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = Mask, false
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = Mask, ""
	}
	return u.String()
}

// URLs is URL for a list separated by commas or spaces, as NATS server
// lists are given; the result is comma-separated.
func URLs(list string) string {
	fields := strings.Fields(strings.ReplaceAll(list, ",", " "))
	for i, f := range fields {
		fields[i] = URL(f)
	}
	return strings.Join(fields, ",")
}
