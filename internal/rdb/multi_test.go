package rdb

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzStateSeq: any producer state parses without a panic, and a state
// that starts with a sequence number yields it.
func FuzzStateSeq(f *testing.F) {
	for _, s := range []string{"", "7|*", "12|1700000000000-0,1700000000000-1", "x|y", "|", "99999999999999999999|*", "-3|*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, st string) {
		got := stateSeq(st)
		for i := 0; i < len(st) && st[i] != '|'; i++ {
			if st[i] < '0' || st[i] > '9' {
				return // not a sequence: any value will do, as long as nothing panics
			}
		}
		prefix := st
		if i := strings.IndexByte(st, '|'); i >= 0 {
			prefix = st[:i]
		}
		if want, err := strconv.ParseInt(prefix, 10, 64); err == nil && got != want {
			t.Fatalf("stateSeq(%q) = %d, want %d", st, got, want)
		}
	})
}

func TestMultiEligible(t *testing.T) {
	plain := &AppendBatch{DedupeIDs: []string{"", ""}, Fields: [][]string{{"i", "a", "d", "x"}, {"i", "b", "d", "y"}}}
	if !plain.MultiEligible() {
		t.Fatal("plain events refused")
	}
	for name, b := range map[string]*AppendBatch{
		"dedupe":       {DedupeIDs: []string{"a"}, Fields: [][]string{{"i", "a", "d", "x"}}},
		"more fields":  {DedupeIDs: []string{""}, Fields: [][]string{{"i", "a", "k", "key", "d", "x"}}},
		"maxlen below": {MaxLen: 1, DedupeIDs: []string{"", ""}, Fields: plain.Fields},
	} {
		if b.MultiEligible() {
			t.Errorf("%s: accepted for the transactional append", name)
		}
	}
}
