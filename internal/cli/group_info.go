package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

// groupInfoCmd is `herald group info TOPIC GROUP`: one group's state per
// partition (owner, lease, pending, lag).
func groupInfoCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "info TOPIC GROUP", Short: "Show a consumer group per partition: owner, lease age, pending and lag",
		Long: `Show one consumer group of TOPIC: its live consumers and, per partition, the consumer
that owns it (ordered subscriptions hold a lease per partition), how long it has held it and
how long the lease has left, the entries pending (delivered, not acknowledged) and the lag
(entries not yet delivered, counted in the stream; "?" with the reason when it cannot be).`,
		Example: `  herald group info orders billing
  herald group info orders billing --output json`,
		Args: namedArgs("topic", "group"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			gs, err := c.Groups(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, g := range gs {
				if g.Name != args[1] {
					continue
				}
				e.emit(groupJSON(g), func(w io.Writer) {
					lag := lagText(g.Lag, g.LagEstimated)
					if g.Lag < 0 {
						lag = "? (" + g.LagUnknown + ")"
					}
					fmt.Fprintf(w, "group %s of %s: %d pending, lag %s, %d scheduled retries, oldest pending %s\n",
						g.Name, args[0], g.Pending, lag, g.ScheduledRetries, g.OldestPending.Round(time.Millisecond))
					if len(g.Members) > 0 {
						fmt.Fprintf(w, "live consumers (%d): %s\n", len(g.Members), strings.Join(g.Members, ", "))
					}
					printPartitions(w, []herald.GroupInfo{g}, false)
				})
				return nil
			}
			return fmt.Errorf("%w: group %q on topic %q", herald.ErrGroupNotFound, args[1], args[0])
		})}
}

// groupJSON is a group in the JSON output of `groups` and `group info`.
func groupJSON(g herald.GroupInfo) map[string]any {
	parts := make([]map[string]any, len(g.Partitions))
	for i, p := range g.Partitions {
		parts[i] = map[string]any{"partition": p.Partition, "owner": p.Owner, "lease_token": p.OwnerToken,
			"lease_age_seconds": p.LeaseAge.Seconds(), "lease_left_seconds": p.LeaseLeft.Seconds(),
			"pending": p.Pending, "lag": p.Lag, "lag_unknown": p.LagUnknown, "lag_estimated": p.LagEstimated, "last_delivered_id": p.LastDeliveredID}
	}
	members := g.Members
	if members == nil {
		members = []string{}
	}
	return map[string]any{"name": g.Name, "consumers": g.Consumers, "members": members, "pending": g.Pending, "lag": g.Lag,
		"lag_unknown": g.LagUnknown, "lag_estimated": g.LagEstimated, "scheduled_retries": g.ScheduledRetries, "oldest_pending_seconds": g.OldestPending.Seconds(),
		"partitions": parts}
}

// lagText is a lag for a table: "?" when unknown, "~N" when it is Redis's
// estimate rather than a count.
func lagText(lag int64, estimated bool) string {
	switch {
	case lag < 0:
		return "?"
	case estimated:
		return "~" + strconv.FormatInt(lag, 10)
	}
	return strconv.FormatInt(lag, 10)
}

// anyOwner reports whether some partition of some group is owned (an
// ordered group with live consumers): then `herald groups` adds the
// partition table; `herald group info` always shows it.
func anyOwner(gs []herald.GroupInfo) bool {
	for _, g := range gs {
		for _, p := range g.Partitions {
			if p.Owner != "" {
				return true
			}
		}
	}
	return false
}

// printPartitions prints one line per group and partition.
func printPartitions(w io.Writer, gs []herald.GroupInfo, withGroup bool) {
	table(w, func(tw *tabwriter.Writer) {
		if withGroup {
			fmt.Fprint(tw, "GROUP\t")
		}
		fmt.Fprintln(tw, "PARTITION\tOWNER\tLEASE AGE\tLEASE LEFT\tPENDING\tLAG")
		for _, g := range gs {
			for _, p := range g.Partitions {
				owner, age, left := "-", "-", "-"
				if p.Owner != "" {
					owner = p.Owner
					age = p.LeaseAge.Round(time.Millisecond).String()
					left = p.LeaseLeft.Round(time.Millisecond).String()
				}
				lag := lagText(p.Lag, p.LagEstimated)
				if withGroup {
					fmt.Fprintf(tw, "%s\t", g.Name)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", p.Partition, owner, age, left, p.Pending, lag)
			}
		}
	})
}
