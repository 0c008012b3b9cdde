//go:build linux

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redistest"
)

// Stopping a subscription cancels the handler's context: the handler's whole
// process tree must die with it, not only the shell herald started.
func TestExecHandlerCancelKillsItsProcessTree(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := handlerCommand(ctx, `sleep 300 & echo $! > `+pidFile+`.tmp && mv `+pidFile+`.tmp `+pidFile+`; wait`)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				t.Fatalf("pid file %q: %v", b, err)
			}
		} else if time.Now().After(deadline) {
			t.Fatal("the handler did not start its background process")
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // gone already when the test passes
	cancel()
	if err := c.Wait(); err == nil {
		t.Fatal("a cancelled handler reported success")
	}
	redistest.WaitFor(t, 5*time.Second, fmt.Sprintf("background process %d of a cancelled handler to end", pid), func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || zombie(pid)
	})
}

// zombie reports whether pid has exited and waits to be reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	return strings.HasPrefix(strings.TrimSpace(rest), "Z")
}
