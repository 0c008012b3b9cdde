//go:build linux

package cli

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// handlerShim runs the --exec command ($1) so that its whole process tree
// dies with herald. The shim leads its own process group; the kernel sends it
// SIGTERM when herald dies, even by SIGKILL (Pdeathsig), and the trap then
// kills the group. The command runs in the background so that the trap
// interrupts wait at once; its standard input is passed on through fd 3,
// because sh gives background commands /dev/null.
const handlerShim = `trap 'kill -KILL 0' TERM
exec 3<&0
sh -c "$1" <&3 3<&- &
wait $!`

// handlerCommand returns the command for one --exec handler run. Cancelling
// ctx kills the handler's process group (the shim, sh and everything they
// started), and herald dying kills it through the parent-death signal.
//
// Pdeathsig fires when the OS thread that started the child exits; Go keeps
// its threads for the life of the process unless a goroutine exits while
// locked to one, which this package never does.
func handlerCommand(ctx context.Context, command string) *exec.Cmd {
	c := exec.CommandContext(ctx, "sh", "-c", handlerShim, "herald-exec", command)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	// A handler that leaves a background process holding its output open
	// does not hold up the subscription longer than this.
	c.WaitDelay = 2 * time.Second
	return c
}
