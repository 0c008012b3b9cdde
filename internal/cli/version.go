package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version overrides the version read from the build information; set it at
// build time with -ldflags "-X github.com/heraldbus/herald/internal/cli.Version=v1.2.3".
var Version = ""

// buildVersion is what `herald version` reports.
type buildVersion struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

// readVersion reads the version from the build information: the module
// version for `go install github.com/heraldbus/herald/cmd/herald@v1.2.3`,
// the VCS revision and time for a build from a checkout, "(devel)" else.
func readVersion() buildVersion {
	v := buildVersion{Version: "(devel)", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if Version != "" {
		v.Version = Version
	}
	return v
}

// String is the one-line form: "v1.2.3", or
// "(devel) (commit 0123456789ab, modified, 2026-11-27T06:00:00Z)".
func (v buildVersion) String() string {
	s := v.Version
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " (commit " + rev
		if v.Modified {
			s += ", modified"
		}
		if v.Time != "" {
			s += ", " + v.Time
		}
		s += ")"
	}
	return s + " " + v.Go
}

func versionCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "version", Short: "Print the version (also: herald --version)", Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			v := readVersion()
			e.emit(v, func(w io.Writer) { fmt.Fprintln(w, "herald", v) })
			return nil
		})}
}
