package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

// DefaultTimeout is the default of --timeout: how long a one-shot command
// (topics, events, dlq list, publish, ...) may take, connecting included,
// before it gives up on a Redis that does not answer.
const DefaultTimeout = 10 * time.Second

// runsUntilStopped marks (cobra annotation) the commands that legitimately
// run long: they run until interrupted or have bounds of their own, and
// --timeout does not apply to them. It is inherited by subcommands.
const runsUntilStopped = "herald/runs-until-stopped"

// untimed marks cmd as one that --timeout does not bound.
func untimed(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[runsUntilStopped] = "true"
	return cmd
}

func isUntimed(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[runsUntilStopped] != "" {
			return true
		}
	}
	return false
}

// errTimedOut is the cause of a context that --timeout ended.
var errTimedOut = errors.New("herald: --timeout reached")

// deadline is --timeout: it bounds the context of one-shot commands and
// explains the error of a command that ran out of time.
type deadline struct {
	timeout time.Duration
	ctx     context.Context // the command's bounded context; nil when unbounded
	cancel  context.CancelFunc
	cmd     string // the command path, for the message
	addr    string // the Redis address in use, when known
}

// start checks --timeout and bounds the context of cmd unless it is untimed.
func (d *deadline) start(cmd *cobra.Command) error {
	if d.timeout < 0 {
		return usage("--timeout %s is negative; use a duration such as 30s, or 0 for no limit", d.timeout)
	}
	d.cmd = strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
	if !isUntimed(cmd) {
		d.apply(cmd)
	}
	return nil
}

// apply bounds the context of cmd by --timeout; an untimed command that
// does one-shot work in some of its forms (publish without stdin) calls it.
func (d *deadline) apply(cmd *cobra.Command) {
	if d.timeout == 0 || d.ctx != nil {
		return
	}
	d.ctx, d.cancel = d.bound(cmd.Context())
	cmd.SetContext(d.ctx)
}

// bound returns ctx ended by --timeout (only cancelled when it is 0).
func (d *deadline) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d.timeout, errTimedOut)
}

// timedOut reports whether --timeout ended ctx.
func timedOut(ctx context.Context) bool {
	return ctx != nil && errors.Is(context.Cause(ctx), errTimedOut)
}

func (d *deadline) setAddr(addr string) { d.addr = addr }

// explain replaces the error of a command that --timeout ended (a context
// error from deep inside the client, or a connection error) with one that
// names the timeout and the way out.
func (d *deadline) explain(err error) error {
	var ue *UsageError
	var te *timeoutError
	if err == nil || !timedOut(d.ctx) || errors.As(err, &ue) || errors.Is(err, herald.ErrInvalid) || errors.As(err, &te) {
		return err
	}
	return d.error()
}

func (d *deadline) error() *timeoutError {
	return &timeoutError{cmd: d.cmd, addr: d.addr, timeout: d.timeout}
}

// release ends the command's bounded context.
func (d *deadline) release() {
	if d.cancel != nil {
		d.cancel()
	}
}

// timeoutError is a command that ran out of --timeout: a runtime failure
// (exit code 1), like an unreachable Redis.
type timeoutError struct {
	cmd, addr string
	timeout   time.Duration
}

func (e *timeoutError) Error() string {
	at := ""
	if e.addr != "" {
		at = " at " + e.addr
	}
	return fmt.Sprintf("%s: no answer from Redis%s within --timeout %s; check that Redis runs and answers ('herald doctor'), or allow more time with --timeout (0: no limit)",
		e.cmd, at, e.timeout)
}

// Unwrap makes the error a context.DeadlineExceeded.
func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }
