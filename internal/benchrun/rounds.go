package benchrun

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Measuring in rounds (Config.Rounds): each side runs once per round, the
// sides in turn, and a phase is the sum of its rounds.

// RoundSides is one round of a phase.
type RoundSides struct{ Herald, Raw Side }

// Ratio is the round's throughput ratio, as Phase.Ratio.
func (r RoundSides) Ratio() float64 { return Phase{Herald: r.Herald, Raw: r.Raw}.Ratio() }

// newPhase makes the phase of per-round sides h and r (one per round, in
// the order measured).
func newPhase(name string, h, r []Side, heraldDoes, rawDoes string) Phase {
	p := Phase{Name: name, Herald: sumSides(h), Raw: sumSides(r), HeraldDoes: heraldDoes, RawDoes: rawDoes}
	if len(h) > 1 {
		for i := range h {
			p.Rounds = append(p.Rounds, RoundSides{Herald: h[i], Raw: r[i]})
		}
	}
	return p
}

// sumSides adds up the rounds of one side: counts and times add, and the
// latency percentiles are taken over every round's samples.
func sumSides(rounds []Side) Side {
	var t Side
	var lat []time.Duration
	for _, s := range rounds {
		t.Events += s.Events
		t.Elapsed += s.Elapsed
		t.ClientCPU += s.ClientCPU
		t.ServerCPU += s.ServerCPU
		t.Sent += s.Sent
		t.Lost += s.Lost
		t.Batches += s.Batches
		if s.Latency != nil {
			lat = append(lat, s.lat...)
			t.Latency = &Latency{}
		}
	}
	if t.Latency != nil {
		slices.Sort(lat)
		t.Latency, t.lat = percentiles(lat), lat
	}
	return t
}

// sideRun measures one side of a phase for b.span; round numbers its
// topics and streams apart.
type sideRun struct {
	what string // for errors: what this side sends
	run  func(ctx context.Context, round int) (Side, error)
}

// alternate measures every run once per round (Config.Rounds), forward in
// even rounds and backward in odd ones, deleting what each created before
// the next starts, and returns each run's sides in the order of the rounds.
// Over an even number of rounds every run sits at the same mean position
// in time, so a linear drift of the machine's speed cancels out.
func (b *bench) alternate(ctx context.Context, runs []sideRun) ([][]Side, error) {
	out := make([][]Side, len(runs))
	for r := range b.cfg.Rounds {
		for j := range runs {
			i := j
			if r%2 == 1 {
				i = len(runs) - 1 - j
			}
			s, err := runs[i].run(ctx, r)
			b.cleanup(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", runs[i].what, err)
			}
			out[i] = append(out[i], s)
		}
	}
	return out, nil
}

// roundName names a phase's keys apart per round.
func roundName(phase string, round int) string { return fmt.Sprintf("%s-r%d", phase, round) }
