package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

// Live channel commands print what redis-cli prints for the same commands:
// on a terminal its formatted replies ("(integer) 1", `1) "message"`), and
// when standard output is not a terminal its raw replies, one element per
// line, unquoted (redis-cli's --raw), so scripts read them as redis-cli's.

// rawOpts is the output form of the channel commands.
type rawOpts struct{ raw, noRaw bool }

// check rejects --raw with --no-raw.
func (r *rawOpts) check() error {
	if r.raw && r.noRaw {
		return usage("--raw and --no-raw exclude each other")
	}
	return nil
}

// enabled reports whether replies print raw: --raw, --no-raw, else raw when
// standard output is not a terminal.
func (r *rawOpts) enabled(e *env) bool {
	switch {
	case r.raw:
		return true
	case r.noRaw:
		return false
	}
	return !isTerminal(e.io.Out)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	for {
		switch x := w.(type) {
		case *stickyWriter:
			w = x.w
		case *redactWriter:
			w = x.w
		case *os.File:
			st, err := x.Stat()
			return err == nil && st.Mode()&os.ModeCharDevice != 0
		default:
			return false
		}
	}
}

func channelCmd(e *env) *cobra.Command {
	ro := &rawOpts{}
	cmd := &cobra.Command{Use: "channel", Short: "Live channels (Redis Pub/Sub): publish, subscribe, inspect",
		Long: `Live channels are Redis Pub/Sub: fire-and-forget messages for whoever listens now,
interoperable with redis-cli and every Redis client. For events that must not be lost, use topics.
Replies print like redis-cli's: formatted on a terminal, raw (one element per line, unquoted)
when standard output is not a terminal; --raw or --no-raw forces one form.`,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := cmd.Root().PersistentPreRunE(cmd, args); err != nil {
				return err
			}
			return ro.check()
		}}
	subcommands(cmd)
	cmd.PersistentFlags().BoolVar(&ro.raw, "raw", false, "raw replies (one element per line, unquoted) even on a terminal")
	cmd.PersistentFlags().BoolVar(&ro.noRaw, "no-raw", false, "formatted replies even when output is not a terminal")
	cmd.AddCommand(channelPublishCmd(e, ro), channelSubscribeCmd(e, ro, false), channelSubscribeCmd(e, ro, true),
		channelNumsubCmd(e, ro), channelListCmd(e, ro), channelNumpatCmd(e, ro))
	return cmd
}

// integer prints an integer reply.
func integer(w io.Writer, raw bool, n int64) {
	if raw {
		fmt.Fprintf(w, "%d\n", n)
		return
	}
	fmt.Fprintf(w, "(integer) %d\n", n)
}

func channelPublishCmd(e *env, ro *rawOpts) *cobra.Command {
	return &cobra.Command{Use: "publish CHANNEL MESSAGE", Short: "Publish a message (prints the receivers counted by the node)",
		Example: `  herald channel publish mychannel "Hello World!"`,
		Args:    cobra.ExactArgs(2),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			n, err := c.Broadcast(cmd.Context(), args[0], []byte(args[1]))
			if err != nil {
				return err
			}
			e.emit(map[string]any{"channel": args[0], "receivers": n}, func(w io.Writer) { integer(w, ro.enabled(e), int64(n)) })
			return nil
		})}
}

// channelJSON is the JSON line of a channel message (docs/cli.md).
type channelJSON struct {
	Kind    string `json:"kind"`
	Channel string `json:"channel"`
	Pattern string `json:"pattern,omitempty"`
	Data    string `json:"data,omitempty"`
	Count   *int64 `json:"count,omitempty"`
}

func channelSubscribeCmd(e *env, ro *rawOpts, patterns bool) *cobra.Command {
	var count int
	use, short := "subscribe CHANNEL...", "Receive messages of channels until interrupted"
	if patterns {
		use, short = "psubscribe PATTERN...", "Receive messages of channels matching glob patterns"
	}
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.MinimumNArgs(1),
		Example: `  herald channel subscribe mychannel
  herald channel psubscribe 'article.*' --count 2 --output json`,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return usage("--count %d is negative", count)
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return interrupted(cmd, err)
			}
			var l *herald.Listener
			// One bound for both: a Redis that stopped answering must not hold Ctrl-C.
			defer closeBounded(func() error {
				if l != nil {
					l.Close()
				}
				return c.Close()
			})
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			cfg := herald.ListenConfig{Channels: args, OnGap: func(g herald.Gap) {
				fmt.Fprintf(e.io.Err, "herald: reconnected after %s; messages published in the gap are lost (%v)\n", g.End.Sub(g.Start).Round(1e6), g.Err)
			}}
			if patterns {
				cfg = herald.ListenConfig{Patterns: args, OnGap: cfg.OnGap}
			}
			raw := ro.enabled(e)
			if !e.json() && !raw {
				fmt.Fprintln(e.io.Out, "Reading messages... (press Ctrl-C to quit)")
			}
			l, err = c.Listen(ctx, cfg)
			if err != nil {
				return interrupted(cmd, err)
			}
			got := 0
			for {
				select {
				case <-ctx.Done():
					return nil
				case m, ok := <-l.Messages():
					if !ok {
						return nil
					}
					printChannelMessage(e, raw, m)
					if m.Kind == "message" || m.Kind == "pmessage" {
						got++
						if count > 0 && got >= count {
							return nil
						}
					}
				}
			}
		})}
	cmd.Flags().IntVarP(&count, "count", "c", 0, "exit after N messages (0: until interrupted)")
	return untimed(cmd) // runs until interrupted: no --timeout
}

func printChannelMessage(e *env, raw bool, m herald.ChannelMessage) {
	if e.json() {
		j := channelJSON{Kind: m.Kind, Channel: m.Channel, Pattern: m.Pattern, Data: string(m.Data)}
		if m.Kind != "message" && m.Kind != "pmessage" {
			n := m.Count
			j.Count = &n
		}
		e.emit(j, nil)
		return
	}
	w := e.io.Out
	if raw {
		switch m.Kind {
		case "message":
			fmt.Fprintf(w, "message\n%s\n%s\n", m.Channel, m.Data)
		case "pmessage":
			fmt.Fprintf(w, "pmessage\n%s\n%s\n%s\n", m.Pattern, m.Channel, m.Data)
		default:
			fmt.Fprintf(w, "%s\n%s\n%d\n", m.Kind, m.Channel, m.Count)
		}
		return
	}
	switch m.Kind {
	case "message":
		fmt.Fprintf(w, "1) \"message\"\n2) %s\n3) %s\n", strconv.Quote(m.Channel), strconv.Quote(string(m.Data)))
	case "pmessage":
		fmt.Fprintf(w, "1) \"pmessage\"\n2) %s\n3) %s\n4) %s\n", strconv.Quote(m.Pattern), strconv.Quote(m.Channel), strconv.Quote(string(m.Data)))
	default:
		fmt.Fprintf(w, "1) %s\n2) %s\n3) (integer) %d\n", strconv.Quote(m.Kind), strconv.Quote(m.Channel), m.Count)
	}
}

func channelNumsubCmd(e *env, ro *rawOpts) *cobra.Command {
	return &cobra.Command{Use: "numsub CHANNEL...", Short: "Subscribers per channel (summed over every cluster node)", Args: cobra.MinimumNArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			m, err := c.NumSub(cmd.Context(), args...)
			if err != nil {
				return err
			}
			if e.json() {
				e.emit(m, nil)
				return nil
			}
			raw := ro.enabled(e)
			for i, ch := range args {
				if raw {
					fmt.Fprintf(e.io.Out, "%s\n%d\n", ch, m[ch])
					continue
				}
				fmt.Fprintf(e.io.Out, "%d) %s\n%d) (integer) %d\n", 2*i+1, strconv.Quote(ch), 2*i+2, m[ch])
			}
			return nil
		})}
}

func channelListCmd(e *env, ro *rawOpts) *cobra.Command {
	return &cobra.Command{Use: "list [PATTERN]", Short: "Channels with subscribers (over every cluster node)", Args: cobra.MaximumNArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			pattern := ""
			if len(args) == 1 {
				pattern = args[0]
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			chs, err := c.Channels(cmd.Context(), pattern)
			if err != nil {
				return err
			}
			if e.json() {
				e.emit(chs, nil)
				return nil
			}
			raw := ro.enabled(e)
			if len(chs) == 0 {
				if raw {
					fmt.Fprintln(e.io.Out) // redis-cli --raw prints an empty line
				} else {
					fmt.Fprintln(e.io.Out, "(empty array)")
				}
			}
			for i, ch := range chs {
				if raw {
					fmt.Fprintln(e.io.Out, ch)
					continue
				}
				fmt.Fprintf(e.io.Out, "%d) %s\n", i+1, strconv.Quote(ch))
			}
			return nil
		})}
}

func channelNumpatCmd(e *env, ro *rawOpts) *cobra.Command {
	return &cobra.Command{Use: "numpat", Short: "Pattern subscriptions (summed over every cluster node)", Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			n, err := c.NumPat(cmd.Context())
			if err != nil {
				return err
			}
			e.emit(map[string]int64{"numpat": n}, func(w io.Writer) { integer(w, ro.enabled(e), n) })
			return nil
		})}
}
