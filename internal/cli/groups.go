package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func groupsCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "groups TOPIC", Short: "List the consumer groups of a topic", Args: namedArgs("topic"),
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
			lost := groupLosses(cmd.Context(), c, args[0]) // group_seek.go
			if e.json() {
				out := make([]map[string]any, len(gs))
				for i, g := range gs {
					out[i] = groupJSON(g) // group_info.go: members, lag_unknown, partitions (owner, lease, pending, lag)
					out[i]["trimmed_unread"], out[i]["trimmed_pending"], out[i]["dead_letters"] = lost[g.Name].TrimmedUnread, lost[g.Name].TrimmedPending, lost[g.Name].DeadLetters
				}
				e.emit(out, nil)
				return nil
			}
			if len(gs) == 0 {
				fmt.Fprintln(e.io.Out, "(empty list)")
				return nil
			}
			table(e.io.Out, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "GROUP\tCONSUMERS\tPENDING\tLAG\tRETRIES\tOLDEST PENDING\tTRIMMED\tDEAD")
				for _, g := range gs {
					lag := lagText(g.Lag, g.LagEstimated) // group_info.go: "?" unknown, "~N" Redis's estimate
					l := lost[g.Name]
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%d\t%d\n", g.Name, g.Consumers, g.Pending, lag, g.ScheduledRetries, g.OldestPending.Round(time.Millisecond),
						l.TrimmedUnread+l.TrimmedPending, l.DeadLetters)
				}
			})
			if anyOwner(gs) { // group_info.go: owner, lease age, pending and lag per partition
				fmt.Fprintln(e.io.Out)
				printPartitions(e.io.Out, gs, true)
			}
			return nil
		})}
}
