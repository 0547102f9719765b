package workflows

import (
	"errors"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/activities"
)

// finishError is the failure to close the row of a run whose work is
// done: the run fails with it rather than being recorded as failed.
type finishError struct{ err error }

func (e *finishError) Error() string { return e.err.Error() }
func (e *finishError) Unwrap() error { return e.err }

// isStagingLost reports whether any of the errors in err is an activity's
// StagingLost.
func isStagingLost(err error) bool {
	for _, e := range flatten(err) {
		var appErr *temporal.ApplicationError
		if errors.As(e, &appErr) && appErr.Type() == activities.ErrTypeStagingLost {
			return true
		}
	}
	return false
}

// Brief renders err for operators: the message of the activity's own error
// (such as the PostgreSQL error of a load) with the workflow's context, not
// the whole chain of Temporal wrappers around it.
func Brief(err error) string {
	var parts []string
	for _, e := range flatten(err) {
		var appErr *temporal.ApplicationError
		var timeoutErr *temporal.TimeoutError
		switch {
		case errors.As(e, &appErr):
			parts = append(parts, prefixOf(e)+appErr.Message())
		case errors.As(e, &timeoutErr):
			parts = append(parts, prefixOf(e)+"timed out ("+timeoutErr.TimeoutType().String()+")")
		default:
			parts = append(parts, e.Error())
		}
	}
	return strings.Join(parts, "; ")
}

// flatten splits errors.Join results.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// prefixOf returns the context the workflow added in front of an activity
// error ("load facts shard 3: "), or "".
func prefixOf(err error) string {
	var actErr *temporal.ActivityError
	if !errors.As(err, &actErr) {
		return ""
	}
	msg, inner := err.Error(), actErr.Error()
	if i := strings.Index(msg, inner); i > 0 {
		return msg[:i]
	}
	return ""
}
