package herald_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/heraldbus/herald/internal/redistest"
)

// The programs beside the library keep working with it: the seed scenario
// under _examples/blog runs end to end.
func TestBlogExample(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	cmd := exec.Command("go", "run", ".")
	cmd.Dir = "_examples/blog"
	cmd.Env = append(os.Environ(), "HERALD_REDIS_URL="+url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run _examples/blog: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "done: 3 live notifications, 3 events caught up") {
		t.Fatalf("unexpected output:\n%s", out)
	}
}

// The peer harness in bench/ (its own module) keeps compiling against the
// library as it changes.
func TestPeerHarnessBuilds(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a module with peer libraries")
	}
	cmd := exec.Command("go", "vet", ".")
	cmd.Dir = "bench"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go vet in bench/: %v\n%s", err, out)
	}
}
