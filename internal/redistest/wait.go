package redistest

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds and fails the test, naming what it
// waited for, when it does not hold within d. It polls at once, then with a
// short backoff (1 ms doubling up to 25 ms), so a condition that is already
// true costs nothing and a slow one costs little CPU.
//
// It is the one bounded wait of Herald's tests: package-local waiters
// (waitPending, waitStatus, waitMetric) are built on it.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// Poll is WaitFor without the test: it reports whether cond held within d.
// Use it where a waiter wants to add detail to its own failure message.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	pause := time.Millisecond
	for {
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		// Sleeping between polls is the helper's own pacing, not a
		// stand-in for a condition.
		time.Sleep(min(pause, time.Until(deadline)+time.Millisecond))
		pause = min(2*pause, 25*time.Millisecond)
	}
}
