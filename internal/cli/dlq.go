package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
)

func dlqCmd(e *env) *cobra.Command {
	cmd := subcommands(&cobra.Command{Use: "dlq", Short: "List, redrive or delete dead letters"})
	var lf, rf, df filterFlags
	list := &cobra.Command{Use: "list TOPIC", Short: "List dead letters", Args: namedArgs("topic"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			dls, err := c.DeadLetters(cmd.Context(), args[0], lf.filter())
			if err != nil {
				return err
			}
			for _, d := range dls {
				j := toJSON(d.Topic, d.Partition, d.Position, d.Event)
				j.Group, j.Error, j.Attempts, j.Origin = d.Group, d.Error, d.Attempts, d.Origin
				e.emit(j, func(w io.Writer) {
					fmt.Fprintf(w, "%d/%s group=%s attempts=%d origin=%s error=%s data=%s\n", d.Partition, d.Position, d.Group, d.Attempts,
						d.Origin, strconv.Quote(d.Error), strconv.Quote(string(d.Data)))
				})
			}
			if len(dls) == 0 && !e.json() {
				fmt.Fprintln(e.io.Out, "(empty list)")
			}
			return nil
		})}
	lf.bind(list, true)
	redrive := &cobra.Command{Use: "redrive TOPIC", Short: "Send dead letters back to their group (attempts reset)", Args: namedArgs("topic"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := rf.check(); err != nil {
				return err
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			n, err := c.RedriveDeadLetters(cmd.Context(), args[0], rf.filter())
			if err != nil {
				return err
			}
			e.emit(map[string]any{"redriven": n}, func(w io.Writer) { fmt.Fprintf(w, "(integer) %d\n", n) })
			return nil
		})}
	rf.bind(redrive, true)
	redrive.Flags().Lookup("limit").DefValue = "1000"
	rf.limit = 1000
	del := &cobra.Command{Use: "delete TOPIC", Short: "Delete dead letters", Args: namedArgs("topic"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := df.check(); err != nil {
				return err
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			n, err := c.DeleteDeadLetters(cmd.Context(), args[0], df.filter())
			if err != nil {
				return err
			}
			e.emit(map[string]any{"deleted": n}, func(w io.Writer) { fmt.Fprintf(w, "(integer) %d\n", n) })
			return nil
		})}
	df.bind(del, true)
	del.Flags().Lookup("limit").DefValue = "1000"
	df.limit = 1000
	cmd.AddCommand(list, redrive, del)
	return cmd
}
