package herald

import (
	"testing"
	"time"
)

// Due times round up to the millisecond: an event is never delivered before
// its time (rounded down, a due time fell up to 1 ms before it).
func TestDueTimeRoundsUp(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_123)
	for _, c := range []struct {
		t    time.Time
		want int64
	}{
		{base, 1_700_000_000_123},
		{base.Add(time.Nanosecond), 1_700_000_000_124},
		{base.Add(999 * time.Microsecond), 1_700_000_000_124},
		{base.Add(time.Millisecond), 1_700_000_000_124},
	} {
		if got := dueMS(c.t); got != c.want {
			t.Errorf("dueMS(%v) = %d, want %d", c.t, got, c.want)
		}
	}
}
