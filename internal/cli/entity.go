package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
)

// Entity streams (event sourcing): herald append and herald read.

// entityAppendCmd is herald append: an expected-version append to an entity stream.
func entityAppendCmd(e *env) *cobra.Command {
	var expect int64
	var f eventFlags
	cmd := &cobra.Command{Use: "append STREAM DATA --expect N", Short: "Append to an entity stream if it is at version N (event sourcing)",
		Long: `Append DATA as the next event of the entity stream STREAM (e.g. order-123) only if the
stream is at version N (0 for a new stream); print the new version. When another writer
appended first, nothing is written and the command fails with the current version (exit 1).`,
		Example: `  herald append order-123 '{"status":"paid"}' --expect 2 --type order.paid`,
		Args:    cobra.ExactArgs(2),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("expect") {
				return usage("--expect N is required: the version the stream must be at (0 for a new stream)")
			}
			if expect < 0 {
				return usage("--expect %d is negative; use 0 for a new stream", expect)
			}
			if err := validateName("stream", args[0]); err != nil {
				return err
			}
			ev, err := f.event([]byte(args[1]))
			if err != nil {
				return err
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			v, err := c.Append(cmd.Context(), args[0], expect, ev)
			if err != nil {
				return err
			}
			e.emit(map[string]any{"stream": args[0], "version": v}, func(w io.Writer) { fmt.Fprintf(w, "(integer) %d\n", v) })
			return nil
		})}
	cmd.Flags().Int64Var(&expect, "expect", 0, "version the stream must be at (required; 0 for a new stream)")
	cmd.Flags().StringVarP(&f.typ, "type", "t", "", "event type")
	cmd.Flags().StringVar(&f.id, "id", "", "event id")
	cmd.Flags().StringVar(&f.contentType, "content-type", "", "content type of DATA")
	cmd.Flags().StringArrayVarP(&f.headers, "header", "H", nil, "header NAME=VALUE (repeatable)")
	return cmd
}

// entityReadCmd is herald read: an entity stream's events with their versions.
func entityReadCmd(e *env) *cobra.Command {
	var from int64
	cmd := &cobra.Command{Use: "read STREAM", Short: "Read an entity stream's events in order, with versions", Args: namedArgs("stream"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if from < 0 {
				return usage("--from %d is negative", from)
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			evs, err := c.Read(cmd.Context(), args[0], from)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				j := toJSON(args[0], 0, "0-"+strconv.FormatInt(ev.Version, 10), ev.Event)
				e.emit(map[string]any{"version": ev.Version, "event": j}, func(w io.Writer) {
					fmt.Fprintf(w, "%d", ev.Version)
					if ev.Type != "" {
						fmt.Fprintf(w, " type=%s", ev.Type)
					}
					fmt.Fprintf(w, " %s\n", strconv.Quote(string(ev.Data)))
				})
			}
			if len(evs) == 0 && !e.json() {
				fmt.Fprintln(e.io.Out, "(empty list)")
			}
			return nil
		})}
	cmd.Flags().Int64Var(&from, "from", 1, "first version to read")
	return cmd
}
