package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/heraldbus/herald"
)

// Output shared by the command groups: the event forms and tables.

// eventJSON is the JSON form of an event in CLI output (docs/cli.md).
type eventJSON struct {
	Topic       string            `json:"topic"`
	Partition   int               `json:"partition"`
	Position    string            `json:"position"`
	ID          string            `json:"id"`
	Type        string            `json:"type,omitempty"`
	Key         string            `json:"key,omitempty"`
	Source      string            `json:"source,omitempty"`
	Subject     string            `json:"subject,omitempty"`
	Time        time.Time         `json:"time"`
	ContentType string            `json:"content_type,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Data        string            `json:"data"`
	Attempt     int               `json:"attempt,omitempty"`
	Group       string            `json:"group,omitempty"`
	Error       string            `json:"error,omitempty"`
	Attempts    int               `json:"attempts,omitempty"`
	Origin      string            `json:"origin,omitempty"`
}

func toJSON(topic string, partition int, position string, ev herald.Event) eventJSON {
	return eventJSON{Topic: topic, Partition: partition, Position: position, ID: ev.ID, Type: ev.Type, Key: ev.Key,
		Source: ev.Source, Subject: ev.Subject, Time: ev.Time, ContentType: ev.ContentType, Headers: ev.Headers, Data: string(ev.Data)}
}

// textLine is the one-line text form of an event.
func textLine(w io.Writer, partition int, position string, ev herald.Event) {
	fmt.Fprintf(w, "%d/%s", partition, position)
	if ev.Type != "" {
		fmt.Fprintf(w, " type=%s", ev.Type)
	}
	if ev.Key != "" {
		fmt.Fprintf(w, " key=%s", ev.Key)
	}
	fmt.Fprintf(w, " %s\n", strconv.Quote(string(ev.Data)))
}

// table writes rows aligned in columns.
func table(w io.Writer, f func(tw *tabwriter.Writer)) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	f(tw)
	tw.Flush()
}
