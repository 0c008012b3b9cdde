package cli_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// processGone reports whether pid has exited: no such process, or a zombie
// left for whoever adopted it to reap.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return os.IsNotExist(err)
	}
	// pid (comm) state ...: the state follows the last ')'.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	return strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// Issue 13 item 9: SIGKILL of herald subscribe --exec must not leave its
// handler running (it would go on with truncated input). The handler's shell
// and a process it started in the background are both checked.
func TestSubscribeExecHandlersDieWhenHeraldIsKilled(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	ns := redistest.Namespace(t)
	c := client(t, ns)
	if _, err := c.Publish(context.Background(), "jobs", herald.Event{Data: []byte("job")}); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pids")
	handler := fmt.Sprintf(`sleep 300 & echo "$$ $!" > %[1]s.tmp && mv %[1]s.tmp %[1]s; wait`, pidFile)
	cmd := exec.Command(binary, "--redis", redistest.URL(t), "--namespace", ns,
		"subscribe", "jobs", "-g", "workers", "--from", "beginning", "--exec", handler)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // killed below when the test gets that far
		_ = cmd.Wait()
	})
	var pids []int
	redistest.WaitFor(t, 30*time.Second, "the handler to write its pids", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pids = pids[:0]
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("pid file %q: %v", b, err)
			}
			pids = append(pids, pid)
		}
		return len(pids) == 2
	})
	t.Cleanup(func() {
		for _, pid := range pids {
			if !processGone(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL) // the test failed: do not leave them behind
			}
		}
	})
	for _, pid := range pids {
		if processGone(pid) {
			t.Fatalf("handler process %d gone before herald was killed", pid)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: Wait reports the signal
	redistest.WaitFor(t, 5*time.Second, fmt.Sprintf("handler processes %v to die with herald", pids), func() bool {
		for _, pid := range pids {
			if !processGone(pid) {
				return false
			}
		}
		return true
	})
}

// Issue 13 item 11: --count counts every event that reached a final outcome,
// so a subscriber whose handler fails exits by itself once the event is
// dead-lettered, and a filtered-out event counts too.
func TestSubscribeCountCountsDeadLettersAndFiltered(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	if r := run(t, ns, "", "publish", "mail", "hello"); r.code != 0 {
		t.Fatal(r.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := runCtx(ctx, t, ns, "", "subscribe", "mail", "-g", "mailer", "--from", "beginning",
		"--count", "1", "--exec", "exit 1", "--max-attempts", "1")
	if ctx.Err() != nil {
		t.Fatalf("subscribe --count 1 with a failing handler did not exit by itself: %+v", r)
	}
	if r.code != 0 {
		t.Fatalf("subscribe: %+v", r)
	}
	if r := run(t, ns, "", "-o", "json", "dlq", "list", "mail"); strings.Count(r.out, "\n") != 1 || !strings.Contains(r.out, `"group":"mailer"`) {
		t.Fatalf("dead letters: %q", r.out)
	}

	r = runCtx(ctx, t, ns, "", "subscribe", "mail", "-g", "filtered", "--from", "beginning",
		"--count", "1", "--filter", `type == "none"`)
	if ctx.Err() != nil || r.code != 0 || r.out != "" {
		t.Fatalf("subscribe --count 1 with every event filtered out: %+v (context: %v)", r, ctx.Err())
	}
}
