// Package cli implements the herald command line. Commands write to the
// io.Writers they are given and return errors; only main exits.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
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
				if err := herald.ValidateName(k, args[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}
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
}

func (e *env) json() bool { return e.output == "json" }

// client connects with the global flags.
func (e *env) client() (*herald.Client, error) {
	return herald.New(context.Background(), herald.Config{URL: e.url(), Namespace: e.namespace})
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
	root := newRoot(ctx, stdio, red)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if f := root.PersistentFlags().Lookup("redis"); f != nil {
		red.add(f.Value.String(), false)
	}
	return red.error(runResult(cmd, err, out))
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
	return newRoot(ctx, stdio, red)
}

func newRoot(ctx context.Context, stdio IO, red *redactor) *cobra.Command {
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
			return nil
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
	root.PersistentFlags().Lookup("redis").DefValue = redactURL(defURL) // --help never shows the password
	root.Version = readVersion().String()                               // herald --version (version.go)
	root.SetVersionTemplate("herald {{.Version}}\n")
	root.PersistentFlags().StringVar(&e.namespace, "namespace", defNS, "key namespace (env HERALD_NAMESPACE)")
	root.PersistentFlags().StringVarP(&e.output, "output", "o", "text", "output format: text or json")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &UsageError{Err: fmt.Errorf("%v\nRun '%s --help' for usage", err, cmd.CommandPath())}
	})
	root.AddCommand(publishCmd(e), subscribeCmd(e), topicsCmd(e), topicCmd(e), groupsCmd(e), eventsCmd(e), dlqCmd(e),
		channelCmd(e), monitorCmd(e), routeCmd(e), entityAppendCmd(e), entityReadCmd(e), benchCmd(e), clusterCmd(e), doctorCmd(e), serveCmd(e), versionCmd(e),
		scheduledCmd(e), groupCmd(e)) // internal/cli/scheduled.go, group_seek.go
	addCompletions(root, e) // completion.go: topic and group names from Redis
	return root
}
