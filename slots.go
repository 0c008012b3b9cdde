package herald

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// slots bounds the unsettled PublishAsync events of a client
// (Config.MaxPending): a publish takes one slot, and a settled batch gives
// all of its slots back at once, waking the waiters in order. (A buffered
// channel used as the semaphore took the channel's lock twice per event,
// once on each side, and woke one waiter per event.)
type slots struct{ w *semaphore.Weighted }

func newSlots(max int) *slots { return &slots{w: semaphore.NewWeighted(int64(max))} }

// take waits for a free slot until ctx ends.
func (s *slots) take(ctx context.Context) error { return s.w.Acquire(ctx, 1) }

// give returns n slots.
func (s *slots) give(n int) {
	if n > 0 {
		s.w.Release(int64(n))
	}
}
