package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

// Live channel commands print what redis-cli prints for the same commands.

func channelCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "channel", Short: "Live channels (Redis Pub/Sub): publish, subscribe, inspect",
		Long: `Live channels are Redis Pub/Sub: fire-and-forget messages for whoever listens now,
interoperable with redis-cli and every Redis client. For events that must not be lost, use topics.`}
	cmd.AddCommand(channelPublishCmd(e), channelSubscribeCmd(e, false), channelSubscribeCmd(e, true),
		channelNumsubCmd(e), channelListCmd(e), channelNumpatCmd(e))
	return cmd
}

func channelPublishCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "publish CHANNEL MESSAGE", Short: "Publish a message (prints the receivers counted by the node)",
		Example: `  herald channel publish mychannel "Hello World!"`,
		Args:    cobra.ExactArgs(2),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.Broadcast(cmd.Context(), args[0], []byte(args[1]))
			if err != nil {
				return err
			}
			e.emit(map[string]any{"channel": args[0], "receivers": n}, func(w io.Writer) { fmt.Fprintf(w, "(integer) %d\n", n) })
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

func channelSubscribeCmd(e *env, patterns bool) *cobra.Command {
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
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			cfg := herald.ListenConfig{Channels: args, OnGap: func(g herald.Gap) {
				fmt.Fprintf(e.io.Err, "herald: reconnected after %s; messages published in the gap are lost (%v)\n", g.End.Sub(g.Start).Round(1e6), g.Err)
			}}
			if patterns {
				cfg = herald.ListenConfig{Patterns: args, OnGap: cfg.OnGap}
			}
			if !e.json() {
				fmt.Fprintln(e.io.Out, "Reading messages... (press Ctrl-C to quit)")
			}
			l, err := c.Listen(ctx, cfg)
			if err != nil {
				return err
			}
			defer l.Close()
			got := 0
			for {
				select {
				case <-ctx.Done():
					return nil
				case m, ok := <-l.Messages():
					if !ok {
						return nil
					}
					printChannelMessage(e, m)
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
	return cmd
}

func printChannelMessage(e *env, m herald.ChannelMessage) {
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
	switch m.Kind {
	case "message":
		fmt.Fprintf(w, "1) \"message\"\n2) %s\n3) %s\n", strconv.Quote(m.Channel), strconv.Quote(string(m.Data)))
	case "pmessage":
		fmt.Fprintf(w, "1) \"pmessage\"\n2) %s\n3) %s\n4) %s\n", strconv.Quote(m.Pattern), strconv.Quote(m.Channel), strconv.Quote(string(m.Data)))
	default:
		fmt.Fprintf(w, "1) %s\n2) %s\n3) (integer) %d\n", strconv.Quote(m.Kind), strconv.Quote(m.Channel), m.Count)
	}
}

func channelNumsubCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "numsub CHANNEL...", Short: "Subscribers per channel (summed over every cluster node)", Args: cobra.MinimumNArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			m, err := c.NumSub(cmd.Context(), args...)
			if err != nil {
				return err
			}
			if e.json() {
				e.emit(m, nil)
				return nil
			}
			for i, ch := range args {
				fmt.Fprintf(e.io.Out, "%d) %s\n%d) (integer) %d\n", 2*i+1, strconv.Quote(ch), 2*i+2, m[ch])
			}
			return nil
		})}
}

func channelListCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "list [PATTERN]", Short: "Channels with subscribers (over every cluster node)", Args: cobra.MaximumNArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			pattern := ""
			if len(args) == 1 {
				pattern = args[0]
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			chs, err := c.Channels(cmd.Context(), pattern)
			if err != nil {
				return err
			}
			if e.json() {
				e.emit(chs, nil)
				return nil
			}
			if len(chs) == 0 {
				fmt.Fprintln(e.io.Out, "(empty array)")
			}
			for i, ch := range chs {
				fmt.Fprintf(e.io.Out, "%d) %s\n", i+1, strconv.Quote(ch))
			}
			return nil
		})}
}

func channelNumpatCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "numpat", Short: "Pattern subscriptions (summed over every cluster node)", Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.NumPat(cmd.Context())
			if err != nil {
				return err
			}
			e.emit(map[string]int64{"numpat": n}, func(w io.Writer) { fmt.Fprintf(w, "(integer) %d\n", n) })
			return nil
		})}
}
