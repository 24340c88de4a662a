package metrics

import (
	"slices"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
)

// Label values outside the fixed sets.
const (
	labelOther = "other"
	// reasonNone labels an outcome without a reason (applied).
	reasonNone = "none"
	// reasonBadInput is the consumer's reason for a decoding failure that
	// is not a *handlers.InputError.
	reasonBadInput = string(outcome.ReasonBadInput)
	// codeOK labels a KooDrive call that succeeded.
	codeOK = "ok"
)

// The bounded label sets.
var (
	// kdapiClasses are kdapi.Class.String() of every class.
	kdapiClasses = []string{
		kdapi.ClassPermanent.String(), kdapi.ClassRetryable.String(), kdapi.ClassAuth.String(),
		kdapi.ClassNotFound.String(), kdapi.ClassAlreadyExists.String(),
	}
	// codeClasses label KooDrive calls: ok or a kdapi class.
	codeClasses = append([]string{codeOK}, kdapiClasses...)
	// retriedClasses are the classes the consumer retries, initialised in
	// kdsync_retries_total.
	retriedClasses = []string{kdapi.ClassRetryable.String(), kdapi.ClassAuth.String()}

	skipReasons  = stringsOf(outcome.SkipReasons)
	inputReasons = append(stringsOf(handlers.Reasons), reasonBadInput)
	// deadLetterReasons are the reasons an event is dead-lettered: bad
	// input, a KooDrive refusal, a spent retry budget or a panic.
	deadLetterReasons = slices.Concat(inputReasons, kdapiClasses,
		[]string{string(outcome.ClassBudgetExhausted), string(outcome.ClassPanic)})
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

// classLabel maps a kdapi class name to itself, anything else to "other".
func classLabel(c string) string {
	if slices.Contains(kdapiClasses, c) {
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

// codeClassLabel is "ok" for nil, else the error's kdapi class (errors from
// elsewhere are permanent, as kdapi.ClassOf has it).
func codeClassLabel(err error) string {
	if err == nil {
		return codeOK
	}
	c, _ := kdapi.ClassOf(err)
	if s := c.String(); slices.Contains(kdapiClasses, s) {
		return s
	}
	return kdapi.ClassPermanent.String()
}
