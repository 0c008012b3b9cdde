package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

func monitorCmd(e *env) *cobra.Command {
	var (
		topic, channel string
		count          int
		raw            bool
	)
	cmd := &cobra.Command{Use: "monitor", Short: "Show every event and channel message as it flows (--raw: Redis MONITOR of every node)",
		Long: `Show events as they flow, one line each: time, topic/partition (or channel), stream
position, event id, type, key, size and age (now minus the event's time). Topics are tailed
without a consumer group, so the monitor costs publishers and consumers nothing; topics created
while it runs are picked up. Channels are pattern-subscribed.
With --raw, Redis MONITOR runs on every node (on a cluster: masters and replicas) and the lines
are merged, each labelled with its node.`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return usage("--count %d is negative", count)
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return interrupted(cmd, err)
			}
			defer closeClient(c)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			n := 0
			if raw {
				lines, errc := c.MonitorRaw(ctx)
				for l := range lines {
					e.emit(l, func(w io.Writer) { fmt.Fprintf(w, "[%s] %s\n", l.Node, l.Line) })
					if n++; count > 0 && n >= count {
						cancel()
						break
					}
				}
				if err := <-errc; err != nil && ctx.Err() == nil {
					return err
				}
				return nil
			}
			f := herald.MonitorFilter{Topics: topic, Channels: channel}
			if topic != "" && channel == "" {
				f.SkipChannels = true
			}
			if channel != "" && topic == "" {
				f.SkipTopics = true
			}
			evs, err := c.Monitor(ctx, f)
			if err != nil {
				return interrupted(cmd, err)
			}
			for ev := range evs {
				e.emit(ev, func(w io.Writer) { monitorLine(w, ev) })
				if n++; count > 0 && n >= count {
					return nil
				}
			}
			return nil
		})}
	fl := cmd.Flags()
	fl.StringVar(&topic, "topic", "", "glob pattern of topics to show (default all; alone: no channels)")
	fl.StringVar(&channel, "channel", "", "glob pattern of channels to show (default all; alone: no topics)")
	fl.IntVarP(&count, "count", "c", 0, "exit after N lines")
	fl.BoolVar(&raw, "raw", false, "Redis MONITOR of every node, merged and labelled")
	return untimed(cmd) // runs until interrupted or --count: no --timeout
}

func monitorLine(w io.Writer, ev herald.MonitorEvent) {
	ts := ev.Seen.Format("15:04:05.000")
	if ev.Kind == "message" {
		fmt.Fprintf(w, "%s channel:%s size=%d\n", ts, ev.Channel, ev.Size)
		return
	}
	fmt.Fprintf(w, "%s %s/%d %s id=%s", ts, ev.Topic, ev.Partition, ev.Position, ev.ID)
	if ev.Type != "" {
		fmt.Fprintf(w, " type=%s", ev.Type)
	}
	if ev.Key != "" {
		fmt.Fprintf(w, " key=%s", ev.Key)
	}
	fmt.Fprintf(w, " size=%d age=%s\n", ev.Size, ev.Age.Round(time.Microsecond))
}
