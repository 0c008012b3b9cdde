// Package route implements content-based routing at the publisher: an
// ordered list of rules, each a CEL condition over the event and a list of
// destinations (topics, and live channels written "channel:NAME"). Every
// matching rule's destinations receive the event; a rule with stop ends the
// evaluation; when no rule matches, the default destinations do.
//
// Rules are compiled once; evaluating a rule set costs no Redis round trip.
// See docs/routing.md for the rule language and an example.
package route

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/celexpr"
)

// Rule is one routing rule.
type Rule struct {
	Name string   `yaml:"name" json:"name"`
	When string   `yaml:"when" json:"when"` // CEL; empty matches every event
	To   []string `yaml:"to" json:"to"`     // topic names, or "channel:NAME"
	Stop bool     `yaml:"stop" json:"stop"` // stop evaluating after this rule matches
	// Line is the rule's line in its YAML file (0 when built in code).
	Line int `yaml:"-" json:"-"`
}

// Config is a rule set.
type Config struct {
	Rules   []Rule   `yaml:"rules" json:"rules"`
	Default []string `yaml:"default" json:"default"` // destinations when no rule matches
}

// Destination is where an event is routed.
type Destination struct {
	Channel bool   // a live channel (Pub/Sub) rather than a topic
	Name    string // topic or channel name
}

// String returns the topic name, or "channel:NAME".
func (d Destination) String() string {
	if d.Channel {
		return "channel:" + d.Name
	}
	return d.Name
}

// ErrInvalidRules wraps every problem found in a rule set; it wraps herald.ErrInvalid too.
var ErrInvalidRules = fmt.Errorf("%w: invalid routing rules", herald.ErrInvalid)

type compiled struct {
	rule Rule
	prg  *celexpr.Program // nil: matches everything
	to   []Destination
}

// Router evaluates a compiled rule set. It is safe for concurrent use.
type Router struct {
	rules []compiled
	def   []Destination
}

// ParseDestination parses "NAME" (a topic) or "channel:NAME".
func ParseDestination(s string) (Destination, error) {
	if name, ok := strings.CutPrefix(s, "channel:"); ok {
		if name == "" {
			return Destination{}, fmt.Errorf("destination %q has no channel name; write channel:NAME", s)
		}
		return Destination{Channel: true, Name: name}, nil
	}
	if err := herald.ValidateName("topic", s); err != nil {
		return Destination{}, fmt.Errorf("destination %q: %w (channels are written channel:NAME)", s, err)
	}
	return Destination{Name: s}, nil
}

// New compiles a rule set. Problems name the rule, its line (when loaded
// from YAML) and column, and the CEL message.
func New(cfg Config) (*Router, error) {
	r := &Router{}
	var problems []string
	seen := map[string]bool{}
	for i, rule := range cfg.Rules {
		where := fmt.Sprintf("rule %d", i+1)
		if rule.Name != "" {
			where = fmt.Sprintf("rule %q", rule.Name)
			if seen[rule.Name] {
				problems = append(problems, fmt.Sprintf("%s: the name is used twice; give each rule its own name", where))
			}
			seen[rule.Name] = true
		}
		c := compiled{rule: rule}
		if strings.TrimSpace(rule.When) != "" {
			prg, err := celexpr.Compile(rule.When)
			if err != nil {
				var ce *celexpr.CompileError
				if errors.As(err, &ce) {
					if rule.Line > 0 { // loaded from YAML: the file's line
						problems = append(problems, fmt.Sprintf("%s: line %d, column %d of when: %s", where, rule.Line+ce.Line-1, ce.Column, ce.Message))
					} else {
						problems = append(problems, fmt.Sprintf("%s: when: line %d, column %d: %s", where, ce.Line, ce.Column, ce.Message))
					}
					continue
				}
				problems = append(problems, fmt.Sprintf("%s: when: %v", where, err))
				continue
			}
			c.prg = prg
		}
		if len(rule.To) == 0 {
			problems = append(problems, fmt.Sprintf("%s: no destinations; add to: [TOPIC or channel:NAME, ...]", where))
		}
		for _, t := range rule.To {
			d, err := ParseDestination(t)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			c.to = append(c.to, d)
		}
		r.rules = append(r.rules, c)
	}
	for _, t := range cfg.Default {
		d, err := ParseDestination(t)
		if err != nil {
			problems = append(problems, fmt.Sprintf("default: %v", err))
			continue
		}
		r.def = append(r.def, d)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w:\n  %s", ErrInvalidRules, strings.Join(problems, "\n  "))
	}
	return r, nil
}

// Parse compiles a YAML rule set:
//
//	rules:
//	  - name: tech
//	    when: data.category == "tech"
//	    to: [articles.tech]
//	default: [articles.other]
func Parse(src []byte) (*Router, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRules, err)
	}
	var cfg Config
	if err := doc.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRules, err)
	}
	// Record each rule's line for error messages.
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		m := doc.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value != "rules" || m.Content[i+1].Kind != yaml.SequenceNode {
				continue
			}
			for j, item := range m.Content[i+1].Content {
				if j >= len(cfg.Rules) {
					break
				}
				cfg.Rules[j].Line = item.Line
				for k := 0; k+1 < len(item.Content); k += 2 {
					if item.Content[k].Value == "when" {
						cfg.Rules[j].Line = item.Content[k+1].Line
					}
				}
			}
		}
	}
	return New(cfg)
}

// Load reads and compiles a YAML rule file.
func Load(path string) (*Router, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRules, err)
	}
	r, err := Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Result is the outcome of routing one event.
type Result struct {
	Matched      []string      // names of the rules that matched, in order
	Destinations []Destination // every destination, each once, in order
	Default      bool          // no rule matched: the default destinations apply
	EvalErrors   int           // conditions that could not be evaluated (counted as false)
}

// Route evaluates the rules for ev.
func (r *Router) Route(ev *herald.Event) Result {
	var res Result
	a := celexpr.NewActivation(&celexpr.Vars{ID: ev.ID, Type: ev.Type, Source: ev.Source, Subject: ev.Subject, Key: ev.Key,
		ContentType: ev.ContentType, Headers: ev.Headers, Time: ev.Time, Data: ev.Data})
	add := func(ds []Destination) {
	next:
		for _, d := range ds {
			for _, have := range res.Destinations {
				if have == d {
					continue next
				}
			}
			res.Destinations = append(res.Destinations, d)
		}
	}
	for i := range r.rules {
		c := &r.rules[i]
		if c.prg != nil {
			ok, err := c.prg.Match(a)
			if err != nil {
				res.EvalErrors++
			}
			if !ok {
				continue
			}
		}
		res.Matched = append(res.Matched, c.rule.Name)
		add(c.to)
		if c.rule.Stop {
			break
		}
	}
	if len(res.Matched) == 0 {
		res.Default = true
		add(r.def)
	}
	return res
}

// Delivery is what publishing to one destination gave.
type Delivery struct {
	Destination Destination
	Position    herald.Position // for topics
	Receivers   int             // for channels (node-local count)
	Err         error
}

// Publish routes ev and publishes it to every destination: topics with
// Client.Publish, channels with Client.Broadcast (the payload only). Set
// ev.ID to make a retried routed publish store the event once per topic. It returns one
// Delivery per destination and the first error.
func (r *Router) Publish(ctx context.Context, c *herald.Client, ev herald.Event) (Result, []Delivery, error) {
	res := r.Route(&ev)
	out := make([]Delivery, 0, len(res.Destinations))
	var first error
	for _, d := range res.Destinations {
		dl := Delivery{Destination: d}
		if d.Channel {
			dl.Receivers, dl.Err = c.Broadcast(ctx, d.Name, ev.Data)
		} else {
			dl.Position, dl.Err = c.Publish(ctx, d.Name, ev)
		}
		if dl.Err != nil && first == nil {
			first = fmt.Errorf("route to %s: %w", d, dl.Err)
		}
		out = append(out, dl)
	}
	return res, out, first
}
