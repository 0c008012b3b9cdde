package cli_test

import (
	"strings"
	"testing"

	"github.com/heraldbus/herald/internal/redistest"
)

// TestPublishReplicatedWithoutReplicaFailsNamingTheFix (issue 13 item 7):
// `herald publish --durability replicated` against a standalone Redis
// without replicas fails with an error that says how to fix it, unless
// --allow-degraded is given; then the output says "degraded".
func TestPublishReplicatedWithoutReplicaFailsNamingTheFix(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	r := run(t, ns, "", "publish", "--durability", "replicated", "orders", "x")
	if r.code != 1 || !strings.Contains(r.err, "replica") || !strings.Contains(r.err, "replicaof") || !strings.Contains(r.err, "--allow-degraded") {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming replicaof and --allow-degraded", r.code, r.err)
	}
	r = run(t, ns, "", "publish", "--durability", "replicated", "--allow-degraded", "orders", "y")
	if r.code != 0 || !strings.Contains(r.out, "degraded") {
		t.Fatalf("with --allow-degraded: exit %d, out %q, err %q; want success saying degraded", r.code, r.out, r.err)
	}
	r = run(t, ns, "a\nb\n", "publish", "--durability", "replicated", "--allow-degraded", "orders", "-")
	if r.code != 0 || !strings.Contains(r.out, "degraded: 2") {
		t.Fatalf("stdin with --allow-degraded: exit %d, out %q, err %q; want 2 degraded", r.code, r.out, r.err)
	}
	r = run(t, ns, "", "--output", "json", "publish", "--durability", "replicated", "--allow-degraded", "orders", "z")
	if r.code != 0 || !strings.Contains(r.out, `"degraded":true`) {
		t.Fatalf("json with --allow-degraded: exit %d, out %q; want degraded true", r.code, r.out)
	}
}
