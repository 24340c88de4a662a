package outcome

import (
	"strings"

	"github.com/kdsync/kdsync/handlers"
)

// NoUser is the user token of an outcome or dead letter whose user could
// not be read (bad input with no usable subject).
const NoUser = "_"

// Subject is where the outcome of an event is published:
// <prefix>.<result>.<action>.<userId>, so that one user's outcomes are a
// subject filter (<prefix>.*.*.<userId>). Before contract v1.1 outcomes
// had no user token (<prefix>.<result>.<action>); readers accept both
// (ParseSubject).
func Subject(prefix string, r Result, a handlers.Action, user string) string {
	return prefix + "." + string(r) + "." + subjectToken(string(a)) + "." + UserToken(user)
}

// DeadLetterSubject is where a dead letter is stored:
// <prefix>.<reason>.<action>.<userId> (before v1.1
// <prefix>.<reason>.<action>).
func DeadLetterSubject(prefix string, reason Reason, a handlers.Action, user string) string {
	if reason == "" {
		reason = "unknown"
	}
	return prefix + "." + subjectToken(string(reason)) + "." + subjectToken(string(a)) + "." + UserToken(user)
}

// UserToken is user as a subject token: NoUser when empty, with the
// characters NATS gives a meaning ('.', '*', '>', white space) replaced
// by '_'. The consumer's user ids come from the event's subject, so they
// pass unchanged.
func UserToken(user string) string {
	if user == "" {
		return NoUser
	}
	return subjectToken(user)
}

// SubjectParts are the tokens after the prefix of an outcome's or a dead
// letter's subject.
type SubjectParts struct {
	// Kind is the result (outcomes) or the reason (dead letters).
	Kind   string
	Action string
	// User is empty on a subject of the old form (no user token) and on
	// NoUser.
	User string
	// Old: the subject has the pre-v1.1 form <prefix>.<kind>.<action>.
	Old bool
}

// ParseSubject splits an outcome or dead-letter subject under prefix, of
// either form. ok is false when subject is not under prefix or has
// another number of tokens.
func ParseSubject(prefix, subject string) (p SubjectParts, ok bool) {
	rest, found := strings.CutPrefix(subject, prefix+".")
	if !found {
		return p, false
	}
	t := strings.Split(rest, ".")
	switch len(t) {
	case 2:
		return SubjectParts{Kind: t[0], Action: t[1], Old: true}, true
	case 3:
		p = SubjectParts{Kind: t[0], Action: t[1], User: t[2]}
		if p.User == NoUser {
			p.User = ""
		}
		return p, true
	}
	return p, false
}

// SubjectFilters are the filters that select, under prefix, the subjects
// of kind (a result or reason), action and user, in both forms; an empty
// value matches any. With a user, only the new form can be selected on the
// server: the old form is returned too (every user), and the caller checks
// the user in the message itself.
func SubjectFilters(prefix, kind, action, user string) []string {
	tok := func(v string) string {
		if v == "" || strings.ContainsAny(v, ".*> \t\r\n") {
			return "*"
		}
		return v
	}
	u := "*"
	if user != "" {
		u = UserToken(user)
	}
	newForm := prefix + "." + tok(kind) + "." + tok(action) + "." + u
	return []string{prefix + "." + tok(kind) + "." + tok(action), newForm}
}

func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' {
			return '_'
		}
		return r
	}, s)
}
