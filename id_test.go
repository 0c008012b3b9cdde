package herald

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestIDsAreSortedUUIDv7(t *testing.T) {
	g := newIDGen()
	prev := ""
	seen := map[string]bool{}
	before := time.Now().Add(-time.Millisecond)
	for i := 0; i < 20000; i++ {
		id := g.next()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("%q: not a UUIDv7 (%v, version %d, variant %v)", id, err, u.Version(), u.Variant())
		}
		if id <= prev {
			t.Fatalf("ids out of order: %s after %s", id, prev)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		prev = id
		sec, nsec := u.Time().UnixTime()
		if ts := time.Unix(sec, nsec); ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
			t.Fatalf("id %s carries time %v", id, ts)
		}
	}
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = newID()
	}
}
