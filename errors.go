package herald

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid is wrapped by every error caused by bad input (a topic name,
	// an option, an event too large): retrying the same call cannot succeed.
	ErrInvalid = errors.New("herald: invalid input")
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("herald: client closed")
	// ErrTopicNotFound is returned for a topic that does not exist when
	// automatic creation is off, and by inspection calls.
	ErrTopicNotFound = errors.New("herald: topic not found")
	// ErrTooLarge is returned for an event over the topic's MaxEventBytes; it wraps ErrInvalid.
	ErrTooLarge = fmt.Errorf("%w: event too large", ErrInvalid)
	// ErrPublishTimeout is returned when a batch could not be confirmed within
	// Config.PublishTimeout. The outcome is unknown; publishing the same events
	// again with caller-set ids is safe.
	ErrPublishTimeout = errors.New("herald: publish not confirmed within the publish timeout")
	// ErrNotReplicated is returned for a Replicated publish that fewer
	// replicas than Config.Replicas acknowledged within
	// Config.ReplicationTimeout, unless the caller accepted degraded
	// publishes (AllowDegraded, Config.AllowDegraded). The events are stored
	// on the master: a crash of the master before they reach a replica can
	// lose them. Publishing them again stores them twice unless they carry
	// caller-set ids (deduplicated within the topic's window).
	ErrNotReplicated = errors.New("herald: events stored on the master but not acknowledged by enough replicas")
	// ErrRelease, returned by a handler (or wrapped), hands the event back
	// unhandled: it is neither acknowledged nor counted as a failed attempt,
	// and another consumer of the group (or this one) takes it over at once.
	ErrRelease = errors.New("herald: event released unhandled")
	// ErrGroupNotFound is returned when a dead letter names a group that no longer exists.
	ErrGroupNotFound = errors.New("herald: consumer group not found")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// PermanentError marks a handler error that must not be retried.
type PermanentError struct{ Err error }

// Error returns the wrapped error's text marked as permanent.
func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the event is dead-lettered at once instead of retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
