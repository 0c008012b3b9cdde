// Package cli implements the herald command line. Commands write to the
// io.Writers they are given and return errors; only main exits.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/server"
)

// UsageError is bad input on the command line: exit code 2.
type UsageError struct{ Err error }

// Error returns the message.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

func usage(format string, args ...any) error { return &UsageError{Err: fmt.Errorf(format, args...)} }

// namedArgs accepts exactly len(kinds) arguments and checks each that has a
// kind ("topic", "group", "stream"; "" for none) as such a name, before the
// command connects: a bad name exits 2 even when Redis is down.
func namedArgs(kinds ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(len(kinds))(cmd, args); err != nil {
			return err
		}
		for i, k := range kinds {
			if k != "" {
				if err := validateName(k, args[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// validateName is herald.ValidateName naming the first character that is
// not allowed, where herald.ValidateName names only its first byte
// ("тема" has "Ñ" at byte 0).
func validateName(kind, name string) error {
	err := herald.ValidateName(kind, name)
	if err == nil || len(name) > herald.MaxTopicNameLen {
		return err
	}
	for i := 0; i < len(name); i++ {
		if herald.ValidateName(kind, name[i:i+1]) == nil {
			continue // an allowed character
		}
		if name[i] < utf8.RuneSelf {
			return err // an ASCII character: named right
		}
		_, size := utf8.DecodeRuneInString(name[i:]) // not UTF-8: the byte, quoted as "\xd1"
		return fmt.Errorf("%w: %s name %q has %q at byte %d; use only letters, digits, '.', '-', '_' and '/'",
			herald.ErrInvalid, kind, name, name[i:i+size], i)
	}
	return err
}

// subcommands makes cmd a group of subcommands: without one it prints its
// help; with an unknown one it fails (exit 2) naming it and the valid ones.
func subcommands(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return c.Help()
		}
		var names []string
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() && sub.Name() != "help" {
				names = append(names, sub.Name())
			}
		}
		hint := ""
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2 // cobra's default, which it sets on the root only
		}
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
		}
		return usage("unknown command %q for %q%s; use one of: %s\nRun '%s --help' for usage",
			args[0], c.CommandPath(), hint, strings.Join(names, ", "), c.CommandPath())
	}
	return cmd
}

// ExitCode maps an error from Run to a process exit code: 0 ok, 2 bad input
// (usage, invalid names or sizes, malformed URL), 1 anything else.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue), errors.Is(err, herald.ErrInvalid):
		return 2
	}
	return 1
}

// IO is where a command reads and writes.
type IO struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

type env struct {
	io        IO
	red       *redactor // passwords kept out of errors and stderr (redact.go)
	redisURL  string
	namespace string
	output    string
	deadline  deadline // --timeout (timeout.go)
}

func (e *env) json() bool { return e.output == "json" }

// client connects with the global flags. ctx bounds the connecting (the
// command's context: --timeout, Ctrl-C); it is not kept.
func (e *env) client(ctx context.Context) (*herald.Client, error) {
	u := e.url()
	if err := checkRedisURL(u); err != nil {
		return nil, err
	}
	e.deadline.setAddr(redisHost(u))
	return herald.New(ctx, herald.Config{URL: u, Namespace: e.namespace})
}

// checkRedisURL refuses a Redis URL that does not parse or names a port out
// of range (bad input, exit 2), before anything dials it.
func checkRedisURL(u string) error {
	opt, err := rdb.ParseURL(u)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("%w: %v", herald.ErrInvalid, err)}
	}
	for _, a := range opt.InitAddress {
		_, port, _ := net.SplitHostPort(a)
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return &UsageError{Err: fmt.Errorf("%w: invalid Redis URL %q: port %s is out of range; use a port from 1 to 65535, e.g. redis://127.0.0.1:6379",
				herald.ErrInvalid, u, port)}
		}
	}
	return nil
}

// interrupted returns err, or nil when the command was interrupted (Ctrl-C,
// SIGTERM): a command that runs until interrupted exits 0 then, even while
// it was still connecting (docs/cli.md, exit codes).
func interrupted(cmd *cobra.Command, err error) error {
	if cmd.Context().Err() != nil {
		return nil
	}
	return err
}

// closeWait bounds how long a command waits for its client to close: a
// Redis that stopped answering must not hold the exit.
const closeWait = 2 * time.Second

// closeClient closes c, waiting at most closeWait. Commands close after
// their calls have returned, so nothing they published is left unsent.
func closeClient(c *herald.Client) { closeBounded(c.Close) }

// closeBounded calls closeFn, waiting at most closeWait for it.
func closeBounded(closeFn func() error) {
	done := make(chan struct{})
	go func() {
		_ = closeFn()
		close(done)
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// url is the engine URL with HERALD_REDIS_PASSWORD applied when it has no
// password of its own; its password is remembered for redaction.
func (e *env) url() string {
	u := withPassword(e.engineURL(), os.Getenv("HERALD_REDIS_PASSWORD"))
	e.red.add(u, false)
	return u
}

// emit writes v as one JSON line (json output) or calls text. A failed
// write is kept by the output writer and returned by Run.
func (e *env) emit(v any, text func(w io.Writer)) {
	if e.json() {
		b, err := json.Marshal(v)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": "encode output: " + err.Error()})
		}
		_, _ = e.io.Out.Write(append(b, '\n'))
		return
	}
	text(e.io.Out)
}

// stickyWriter keeps the first write error, so that output written with
// fmt.Fprintf in many places is checked once, when the command ends: a full
// disk or a closed pipe fails the command instead of passing unseen.
type stickyWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	if err != nil {
		s.err = fmt.Errorf("write output: %w", err)
	}
	return n, err
}

func (s *stickyWriter) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Run executes the herald command line args (without the program name).
func Run(ctx context.Context, args []string, stdio IO) error {
	out := &stickyWriter{w: stdio.Out}
	stdio.Out = out
	red := &redactor{}
	red.addEnv()
	if stdio.Err != nil {
		stdio.Err = &redactWriter{r: red, w: stdio.Err}
	}
	// OpenTelemetry from OTEL_* when they ask for it (docs/operations.md).
	stopTracing, err := server.SetupTracing(ctx)
	if err != nil {
		return &UsageError{Err: err}
	}
	defer stopTracing()
	root, e := newRoot(ctx, stdio, red)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if f := root.PersistentFlags().Lookup("redis"); f != nil {
		red.add(f.Value.String(), false)
	}
	err = e.deadline.explain(runResult(cmd, err, out)) // timeout.go
	e.deadline.release()
	return red.error(err)
}

func runResult(cmd *cobra.Command, err error, out *stickyWriter) error {
	if err == nil {
		return out.failed()
	}
	var re *runError
	if errors.As(err, &re) {
		return re.err
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ue
	}
	// Errors cobra raises itself (unknown command or flag, wrong argument
	// count) are usage errors.
	if cmd != nil && !strings.Contains(err.Error(), "--help") {
		err = fmt.Errorf("%v\nRun '%s --help' for usage", err, cmd.CommandPath())
	}
	return &UsageError{Err: err}
}

// runError marks errors returned by a command's own code.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }

// wrap turns a command body into a cobra RunE whose errors pass through Run unchanged.
func wrap(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := f(cmd, args); err != nil {
			return &runError{err: err}
		}
		return nil
	}
}

// NewRoot builds the command tree.
func NewRoot(ctx context.Context, stdio IO) *cobra.Command {
	red := &redactor{}
	red.addEnv()
	root, _ := newRoot(ctx, stdio, red)
	return root
}

func newRoot(ctx context.Context, stdio IO, red *redactor) (*cobra.Command, *env) {
	e := &env{io: stdio, red: red}
	root := &cobra.Command{
		Use:   "herald",
		Short: "Herald: a distributed event bus on Redis",
		Long: `Herald turns Redis into an event backbone: durable topics on Redis Streams
(partitions, consumer groups, retries, dead letters) with a CLI that feels like redis-cli.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if e.output != "text" && e.output != "json" {
				return usage("--output %q is not supported; use text or json", e.output)
			}
			e.red.add(e.redisURL, false)
			if cmd.Flags().Changed("redis") || os.Getenv("HERALD_REDIS_URL") != "" {
				e.redisURL = withPassword(e.redisURL, os.Getenv("HERALD_REDIS_PASSWORD"))
			}
			return e.deadline.start(cmd) // --timeout for one-shot commands (timeout.go)
		},
		// Without a command: the help (after the flags were checked).
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	root.SetContext(ctx)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	defURL := os.Getenv("HERALD_REDIS_URL")
	if defURL == "" {
		defURL = herald.DefaultURL
	}
	defNS := os.Getenv("HERALD_NAMESPACE")
	if defNS == "" {
		defNS = herald.DefaultNamespace
	}
	root.PersistentFlags().StringVar(&e.redisURL, "redis", defURL,
		"Redis URL (env HERALD_REDIS_URL); a password in it wins over HERALD_REDIS_PASSWORD")
	root.PersistentFlags().Lookup("redis").DefValue = redactValue(defURL) // --help never shows the password
	root.Version = readVersion().String()                                 // herald --version (version.go)
	root.SetVersionTemplate("herald {{.Version}}\n")
	root.PersistentFlags().StringVar(&e.namespace, "namespace", defNS, "key namespace (env HERALD_NAMESPACE)")
	root.PersistentFlags().StringVarP(&e.output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().DurationVar(&e.deadline.timeout, "timeout", DefaultTimeout,
		"how long a one-shot command may wait for Redis (0: no limit); not for subscribe, monitor, channel subscribe, serve, bench, cluster, doctor")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &UsageError{Err: fmt.Errorf("%v\nRun '%s --help' for usage", err, cmd.CommandPath())}
	})
	root.AddCommand(publishCmd(e), subscribeCmd(e), topicsCmd(e), topicCmd(e), groupsCmd(e), eventsCmd(e), dlqCmd(e),
		channelCmd(e), monitorCmd(e), routeCmd(e), entityAppendCmd(e), entityReadCmd(e), benchCmd(e), clusterCmd(e), doctorCmd(e), serveCmd(e), versionCmd(e),
		scheduledCmd(e), groupCmd(e)) // internal/cli/scheduled.go, group_seek.go
	root.InitDefaultCompletionCmd() // now, to make it a group as the others (cobra adds it when it runs)
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			subcommands(c)
		}
	}
	addCompletions(root, e) // completion.go: topic and group names from Redis
	return root, e
}
