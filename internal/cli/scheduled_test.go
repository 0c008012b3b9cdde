package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redistest"
)

func TestCLIDelayedPublishListCancelAndSeek(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	if r := run(t, ns, "", "group", "create", "t", "g", "--from", "beginning"); r.code != 0 {
		t.Fatalf("group create: %+v", r)
	}
	if r := run(t, ns, "", "publish", "t", "later", "--delay", "1h", "--id", "r1"); r.code != 0 || !strings.HasPrefix(r.out, "scheduled r1 on partition 0, due ") {
		t.Fatalf("delayed publish: %+v", r)
	}
	r := run(t, ns, "", "scheduled", "list", "t")
	if r.code != 0 || !strings.Contains(r.out, "r1") || !strings.Contains(r.out, `"later"`) {
		t.Fatalf("scheduled list: %+v", r)
	}
	if r := run(t, ns, "", "scheduled", "cancel", "t", "r1"); r.code != 0 || r.out != "cancelled r1\n" {
		t.Fatalf("cancel: %+v", r)
	}
	if r := run(t, ns, "", "scheduled", "cancel", "t", "r1"); r.code != 1 {
		t.Fatalf("second cancel: %+v, want exit 1", r)
	}
	for _, bad := range [][]string{
		{"publish", "t", "x", "--delay", "-1s"},
		{"publish", "t", "x", "--at", "tomorrow"},
		{"publish", "t", "x", "--delay", "1s", "--at", "2030-01-01T00:00:00Z"},
		{"group", "seek", "t", "g", "--to", "yesterday"},
		{"group", "seek", "t", "g"},
		{"scheduled", "list", "t", "-n", "0"},
	} {
		if r := run(t, ns, "", bad...); r.code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", bad, r.code, r.err)
		}
	}
	run(t, ns, "", "publish", "t", "now")
	time.Sleep(5 * time.Millisecond) // not a condition: the seek's time lies after the event's
	if r := run(t, ns, "", "group", "seek", "t", "g", "--to", "end"); r.code != 0 || !strings.Contains(r.out, "moved to end") {
		t.Fatalf("seek: %+v", r)
	}
	r = run(t, ns, "", "-o", "json", "groups", "t")
	if r.code != 0 || !strings.Contains(r.out, `"dead_letters":0`) || !strings.Contains(r.out, `"lag":0`) {
		t.Fatalf("groups after seeking to the end: %+v", r)
	}
}
