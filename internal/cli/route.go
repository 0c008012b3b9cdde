package cli

import (
	"fmt"
	"github.com/heraldbus/herald/gateway"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/route"
	"github.com/spf13/cobra"
)

func routeCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "route", Short: "Content-based routing rules (see docs/routing.md)"}
	test := &cobra.Command{Use: "test RULES.yaml EVENT.json", Short: "Show which rules match an event and where it goes (nothing is published)",
		Long: `Compile RULES.yaml and evaluate it for the event in EVENT.json ('-' for stdin), written
as the HTTP API's event envelope: a JSON object with data (or data_base64) and any of id, type,
key, source, subject, time, content_type, headers (docs/http-api.md).`,
		Args: cobra.ExactArgs(2),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			r, err := route.Load(args[0])
			if err != nil {
				return err
			}
			var src []byte
			if args[1] == "-" {
				src, err = io.ReadAll(e.io.In)
			} else {
				src, err = os.ReadFile(args[1])
			}
			if err != nil {
				return usage("read event: %v", err)
			}
			evs, err := gateway.DecodeEnvelopes(src)
			if err != nil {
				return usage("%s: %v", args[1], err)
			}
			if len(evs) != 1 {
				return usage("%s holds %d events; give one event object", args[1], len(evs))
			}
			ev := evs[0]
			res := r.Route(&ev)
			dests := make([]string, len(res.Destinations))
			for i, d := range res.Destinations {
				dests[i] = d.String()
			}
			e.emit(map[string]any{"matched": res.Matched, "destinations": dests, "default": res.Default, "eval_errors": res.EvalErrors},
				func(w io.Writer) {
					if res.Default {
						fmt.Fprintln(w, "matched: (no rule; default route)")
					} else {
						fmt.Fprintf(w, "matched: %s\n", strings.Join(res.Matched, ", "))
					}
					fmt.Fprintf(w, "destinations: %s\n", strings.Join(dests, ", "))
				})
			return nil
		})}
	cmd.AddCommand(test)
	return cmd
}

// publishRouted publishes one event through a rule file.
func publishRouted(e *env, cmd *cobra.Command, rulesPath string, ev herald.Event) error {
	r, err := route.Load(rulesPath)
	if err != nil {
		return err
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	defer c.Close()
	res, ds, err := r.Publish(cmd.Context(), c, ev)
	out := make([]map[string]any, 0, len(ds))
	for _, d := range ds {
		m := map[string]any{"destination": d.Destination.String()}
		if d.Destination.Channel {
			m["receivers"] = d.Receivers
		} else if d.Err == nil {
			m["partition"], m["position"] = d.Position.Partition, d.Position.ID // as in every JSON output of the CLI
		}
		if d.Err != nil {
			m["error"] = d.Err.Error()
		}
		out = append(out, m)
	}
	e.emit(map[string]any{"matched": res.Matched, "default": res.Default, "deliveries": out}, func(w io.Writer) {
		for _, m := range out {
			switch {
			case m["error"] != nil:
				fmt.Fprintf(w, "%s error: %s\n", m["destination"], m["error"])
			case m["position"] != nil:
				fmt.Fprintf(w, "%s %d/%s\n", m["destination"], m["partition"], m["position"])
			default:
				fmt.Fprintf(w, "%s (integer) %d\n", m["destination"], m["receivers"])
			}
		}
	})
	return err
}

func appendCmd(e *env) *cobra.Command {
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
			ev, err := f.event([]byte(args[1]))
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
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

func readCmd(e *env) *cobra.Command {
	var from int64
	cmd := &cobra.Command{Use: "read STREAM", Short: "Read an entity stream's events in order, with versions", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if from < 0 {
				return usage("--from %d is negative", from)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
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
