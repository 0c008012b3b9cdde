//go:build !linux

package cli

import (
	"context"
	"os/exec"
	"time"
)

// handlerCommand returns the command for one --exec handler run. Outside
// Linux there is no parent-death signal: cancelling ctx kills the handler's
// shell, and processes it started may outlive herald.
func handlerCommand(ctx context.Context, command string) *exec.Cmd {
	c := exec.CommandContext(ctx, "sh", "-c", command)
	c.WaitDelay = 2 * time.Second
	return c
}
