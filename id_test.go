package herald

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestIDsAreSortedUUIDv7(t *testing.T) {
	t.Parallel()
	var g idGen
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

// TestIDsConcurrentUnique: ids made on many goroutines at once are unique
// and, per goroutine, in order.
func TestIDsConcurrentUnique(t *testing.T) {
	t.Parallel()
	var g idGen
	const goroutines, each = 16, 5000
	out := make([][]string, goroutines)
	done := make(chan int)
	for i := range goroutines {
		go func() {
			ids := make([]string, each)
			for j := range ids {
				ids[j] = g.next()
			}
			out[i] = ids
			done <- i
		}()
	}
	for range goroutines {
		<-done
	}
	seen := map[string]bool{}
	for _, ids := range out {
		for j, id := range ids {
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
			if j > 0 && id <= ids[j-1] {
				t.Fatalf("ids of one goroutine out of order: %s after %s", id, ids[j-1])
			}
		}
	}
}

// A name with a character outside the allowed set is refused, naming the
// character (not the first byte of its UTF-8 encoding).
func TestValidateNameNamesTheCharacter(t *testing.T) {
	err := ValidateName("topic", "тема")
	if err == nil || !strings.Contains(err.Error(), `"т" at byte 0`) {
		t.Fatalf("ValidateName(тема) = %v, want it to name \"т\" at byte 0", err)
	}
}
