package cli

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

func groupCmd(e *env) *cobra.Command {
	cmd := subcommands(&cobra.Command{Use: "group", Short: "Create, delete or move (seek) a consumer group"})
	var to, from string
	seek := &cobra.Command{Use: "seek TOPIC GROUP --to beginning|end|POSITION|RFC3339", Short: "Move a group: replay from a time or position, or skip to the end",
		Long: `Move a consumer group on every partition of TOPIC (a POSITION <partition>/<ms>-<seq>
moves that partition only). The group's next reads start at the target: events before it
are not delivered again, events at or after it are (again, when handled before). Pending
entries before the new point are acknowledged unhandled and counted. Running consumers
continue from the new point.`,
		Example: `  herald group seek orders billing --to 2026-01-02T15:00:00Z
  herald group seek orders billing --to end
  herald group seek orders billing --to 0/1767366000000-0`,
		Args: namedArgs("topic", "group"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usage("--to is required: beginning, end, a position <partition>/<ms>-<seq> or an RFC 3339 time")
			}
			target, err := herald.ParseSeekTarget(to)
			if err != nil {
				return err
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			res, err := c.SeekGroup(cmd.Context(), args[0], args[1], target)
			if err != nil {
				return err
			}
			parts := make([]map[string]any, len(res.Partitions))
			for i, p := range res.Partitions {
				parts[i] = map[string]any{"partition": p.Partition, "last_delivered_id": p.LastDeliveredID, "dropped": p.Dropped}
			}
			e.emit(map[string]any{"topic": args[0], "group": args[1], "to": target.String(), "dropped": res.Dropped, "partitions": parts}, func(w io.Writer) {
				fmt.Fprintf(w, "group %s of %s moved to %s on %d partition(s); %d pending entries before it dropped\n",
					args[1], args[0], target, len(res.Partitions), res.Dropped)
				for _, p := range res.Partitions {
					fmt.Fprintf(w, "  %d: after %s (dropped %d)\n", p.Partition, p.LastDeliveredID, p.Dropped)
				}
			})
			return nil
		})}
	seek.Flags().StringVar(&to, "to", "", "beginning, end, <partition>/<ms>-<seq>, or an RFC 3339 time")
	create := &cobra.Command{Use: "create TOPIC GROUP [--from beginning|end|POSITION|RFC3339]", Short: "Create a consumer group at a starting point (default: end, new events only)",
		Args: namedArgs("topic", "group"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			target, err := herald.ParseSeekTarget(from)
			if err != nil {
				return err
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			if err := c.CreateGroup(cmd.Context(), args[0], args[1], target); err != nil {
				return err
			}
			e.emit(map[string]any{"topic": args[0], "group": args[1], "from": target.String()}, func(w io.Writer) {
				fmt.Fprintf(w, "group %s of %s starts at %s (an existing group keeps its place; use herald group seek)\n", args[1], args[0], target)
			})
			return nil
		})}
	create.Flags().StringVar(&from, "from", "end", "beginning, end, <partition>/<ms>-<seq>, or an RFC 3339 time")
	del := &cobra.Command{Use: "delete TOPIC GROUP", Short: "Delete a consumer group with its pending entries and retries", Args: namedArgs("topic", "group"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := validateName("group", args[1]); err != nil {
				return err
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			gs, err := c.Groups(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(gs, func(g herald.GroupInfo) bool { return g.Name == args[1] }) {
				return fmt.Errorf("%w: group %q does not exist on topic %s; nothing was deleted ('herald groups %s' lists its groups)",
					herald.ErrGroupNotFound, args[1], args[0], args[0])
			}
			if err := c.DeleteGroup(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			e.emit(map[string]any{"topic": args[0], "group": args[1], "deleted": true}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted group %s of %s\n", args[1], args[0])
			})
			return nil
		})}
	cmd.AddCommand(seek, create, del, groupInfoCmd(e)) // group_info.go
	return cmd
}

// groupLosses maps group name -> what it lost (for `herald groups`); nil
// when it cannot be read.
func groupLosses(ctx context.Context, c *herald.Client, topic string) map[string]herald.GroupLoss {
	ls, err := c.GroupLosses(ctx, topic)
	if err != nil {
		return nil
	}
	out := make(map[string]herald.GroupLoss, len(ls))
	for _, l := range ls {
		out[l.Group] = l
	}
	return out
}
