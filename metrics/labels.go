package metrics

import (
	"slices"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/outcome"
)

// Label values outside the fixed sets.
const (
	labelOther = "other"
	// reasonNone labels an outcome without a reason (applied).
	reasonNone = "none"
	// codeOK labels a KooDrive call that succeeded.
	codeOK = "ok"
)

// The bounded label sets, from the enumerations of outcome and handlers.
var (
	// classes are the KooDrive failure classes.
	classes = stringsOf(handlers.KooDriveReasons)
	// codeClasses label KooDrive calls: ok or a class.
	codeClasses = append([]string{codeOK}, classes...)
	// retriedClasses are the classes the consumer retries, initialised in
	// kdsync_retries_total.
	retriedClasses = stringsOf(handlers.RetriedReasons)

	skipReasons = stringsOf(outcome.SkipReasons)
	// inputReasons are those of an event whose action could not be read.
	inputReasons = stringsOf(outcome.BadInputReasons)
	// deadLetterReasons are the reasons the consumer dead-letters an event
	// for: every one but SCIM's mapping failures, which never reach it.
	deadLetterReasons = slices.DeleteFunc(stringsOf(outcome.DeadLetterReasons),
		func(r string) bool { return r == string(outcome.ReasonMapping) })
	// reasons is every reason label value but "other".
	reasons = slices.Concat([]string{reasonNone}, skipReasons, deadLetterReasons)
)

func stringsOf[S ~string](xs []S) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

// actionLabel maps an action to itself when it is one of handlers.Actions,
// else to "unknown".
func actionLabel(a handlers.Action) string {
	if slices.Contains(handlers.Actions, a) {
		return string(a)
	}
	return string(handlers.Unknown)
}

// resultLabel maps a result to itself when it is one of outcome.Results,
// else to "other".
func resultLabel(r outcome.Result) string {
	if slices.Contains(outcome.Results, r) {
		return string(r)
	}
	return labelOther
}

// reasonLabel maps "" to "none", a known reason to itself and anything
// else to "other".
func reasonLabel(r string) string {
	switch {
	case r == "":
		return reasonNone
	case slices.Contains(reasons, r):
		return r
	}
	return labelOther
}

// classLabel maps a class to itself, anything else to "other".
func classLabel(c string) string {
	if slices.Contains(classes, c) {
		return c
	}
	return labelOther
}

// opLabel maps an op to itself when it is one of handlers.Ops, else to
// "other".
func opLabel(op handlers.Op) string {
	if slices.Contains(handlers.Ops, op) {
		return string(op)
	}
	return labelOther
}

// codeClassLabel is "ok" for nil, else the class of a KooDrive call's
// error (handlers.Classify: an error from elsewhere is "permanent").
func codeClassLabel(err error) string {
	if err == nil {
		return codeOK
	}
	if c := string(handlers.Classify(err).Class); slices.Contains(classes, c) {
		return c
	}
	return labelOther // a handlers.InputError: not a call's
}
