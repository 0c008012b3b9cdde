package gateway

import "time"

// SetFeedLinger sets how long feeds outlive their last subscriber, for a
// test that must not run beside others (it is not safe for concurrent
// use); it returns the restoring function.
func SetFeedLinger(d time.Duration) (restore func()) {
	old := feedLinger
	feedLinger = d
	return func() { feedLinger = old }
}

// SetFeedBuffer sets the batches buffered per live tail, like SetFeedLinger.
func SetFeedBuffer(n int) (restore func()) {
	old := feedBuffer
	feedBuffer = n
	return func() { feedBuffer = old }
}
