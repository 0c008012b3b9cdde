package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/heraldbus/herald/gateway"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/route"
)

func routeCmd(e *env) *cobra.Command {
	cmd := subcommands(&cobra.Command{Use: "route", Short: "Content-based routing rules (see docs/routing.md)"})
	test := &cobra.Command{Use: "test RULES.yaml EVENT.json", Short: "Show which rules match an event and where it goes (nothing is published)",
		Long: `Compile RULES.yaml and evaluate it for the event in EVENT.json ('-' for stdin), written
as the HTTP API's event envelope: a JSON object with data (or data_base64) and any of id, type,
key, source, subject, time, content_type, headers (docs/http-api.md).`,
		Args: cobra.ExactArgs(2),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			r, err := loadRules(args[0])
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
	r, err := loadRules(rulesPath)
	if err != nil {
		return err
	}
	c, err := e.client(cmd.Context())
	if err != nil {
		return err
	}
	defer closeClient(c)
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

// loadRules loads a rule file; its error names the file once and has one
// "herald:" prefix (route.Load puts the path before an error that has one).
func loadRules(path string) (*route.Router, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, &UsageError{Err: fmt.Errorf("%w: read the rule file: %v", route.ErrInvalidRules, err)}
	}
	r, err := route.Parse(src)
	if err != nil {
		return nil, &fileError{path: path, err: err}
	}
	return r, nil
}

// fileError is an error about the file at path: "herald: PATH: <message>".
type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string {
	return "herald: " + e.path + ": " + strings.TrimPrefix(e.err.Error(), "herald: ")
}

func (e *fileError) Unwrap() error { return e.err }
