package benchrun

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLatencyPercentiles(t *testing.T) {
	s := newSamples(1000)
	for i := 1000; i >= 1; i-- { // out of order on purpose
		s.add(time.Duration(i) * time.Microsecond)
	}
	s.add(time.Hour) // past capacity: counted, not kept
	l := s.latency()
	if s.count() != 1001 || l.Samples != 1000 {
		t.Fatalf("count %d, samples %d", s.count(), l.Samples)
	}
	for _, c := range []struct {
		got, want time.Duration
	}{{l.P50, 501 * time.Microsecond}, {l.P90, 901 * time.Microsecond}, {l.P99, 991 * time.Microsecond},
		{l.P999, 1000 * time.Microsecond}, {l.Max, 1000 * time.Microsecond}} {
		if c.got != c.want {
			t.Errorf("got %v, want %v (%+v)", c.got, c.want, l)
		}
	}
	if newSamples(10).latency().Samples != 0 {
		t.Fatal("empty samples")
	}
}

func TestSideAndRatio(t *testing.T) {
	p := Phase{Herald: Side{Events: 500, Elapsed: time.Second, ClientCPU: time.Millisecond},
		Raw: Side{Events: 1000, Elapsed: time.Second}}
	if p.Ratio() != 0.5 || p.Herald.PerSec() != 500 || p.Herald.ClientCPUPerEvent() != 2*time.Microsecond {
		t.Fatalf("ratio %v, rate %v, cpu %v", p.Ratio(), p.Herald.PerSec(), p.Herald.ClientCPUPerEvent())
	}
	if (Phase{}).Ratio() != 0 || (Side{}).ClientCPUPerEvent() != 0 {
		t.Fatal("zero phase must not divide by zero")
	}
}

func TestConfigFill(t *testing.T) {
	var c Config
	if err := c.Fill(); err != nil {
		t.Fatal(err)
	}
	if c.Partitions != DefaultPartitions || c.Size != DefaultSize || c.Publishers != DefaultPublishers ||
		c.Duration != DefaultDuration || c.Rate != DefaultRate || c.Rounds != DefaultRounds || c.Namespace == "" {
		t.Fatalf("defaults not filled: %+v", c)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Partitions: 5000}, "--partitions"},
		{Config{Size: 4}, "--size"},
		{Config{Publishers: -1}, "--publishers"},
		{Config{Duration: -time.Second}, "--duration"},
		{Config{Rate: MaxRate + 1}, "--rate"},
		{Config{Rounds: MaxRounds + 1}, "--rounds"},
	} {
		err := tc.cfg.Fill()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Fill(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

// Modes measured in rounds need MinRoundTime per round; the others
// measure each side once whatever --rounds says, so a short --duration is
// theirs to choose.
func TestConfigForMode(t *testing.T) {
	short := Config{Duration: 90 * time.Millisecond}
	if err := short.Fill(); err != nil {
		t.Fatal(err)
	}
	for _, mode := range RoundModes {
		c := short
		if err := c.ForMode(mode); err == nil || !strings.Contains(err.Error(), "leaves 45ms per round") {
			t.Errorf("%s with 90ms over 2 rounds: %v, want an error naming the time per round", mode, err)
		}
		c.Rounds = 1
		if err := c.ForMode(mode); err != nil {
			t.Errorf("%s with 90ms in one round: %v", mode, err)
		}
	}
	for _, mode := range []string{"channel", "delay"} {
		c := short
		if err := c.ForMode(mode); err != nil || c.Rounds != 1 {
			t.Errorf("%s: %v, rounds %d; want no error and one round", mode, err, c.Rounds)
		}
	}
}

// Rounds run forward, then backward: over two rounds every run sits at the
// same mean position in time. Each run's sides come back in round order, a
// failing run stops the rounds with its name in the error.
func TestAlternateOrder(t *testing.T) {
	b := &bench{cfg: Config{Rounds: 4}}
	var order []string
	mk := func(name string) sideRun {
		return sideRun{what: name, run: func(_ context.Context, r int) (Side, error) {
			order = append(order, fmt.Sprintf("%s%d", name, r))
			return Side{Events: int64(r)}, nil
		}}
	}
	sides, err := b.alternate(context.Background(), []sideRun{mk("a"), mk("b"), mk("c")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(order, " "), "a0 b0 c0 c1 b1 a1 a2 b2 c2 c3 b3 a3"; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
	for i, s := range sides {
		if len(s) != 4 || s[0].Events != 0 || s[3].Events != 3 {
			t.Fatalf("run %d: sides %+v, want one per round in round order", i, s)
		}
	}
	fail := sideRun{what: "the failing side", run: func(context.Context, int) (Side, error) { return Side{}, errors.New("boom") }}
	if _, err := b.alternate(context.Background(), []sideRun{mk("a"), fail}); err == nil || !strings.Contains(err.Error(), "the failing side: boom") {
		t.Fatalf("error %v, want one naming the failing side", err)
	}
}

// Summed rounds add counts and times and take the percentiles over every
// round's samples; a phase of one round keeps no rounds.
func TestSumSides(t *testing.T) {
	side := func(events int64, lat ...time.Duration) Side {
		s := Side{Events: events, Elapsed: time.Second, ClientCPU: time.Millisecond, Batches: 2, Sent: events, Lost: 1}
		if lat != nil {
			s.lat = lat
			s.Latency = percentiles(lat)
		}
		return s
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	a, b := side(100, ms(1), ms(2), ms(3)), side(300, ms(10), ms(20), ms(30))
	s := sumSides([]Side{a, b})
	if s.Events != 400 || s.Elapsed != 2*time.Second || s.ClientCPU != 2*time.Millisecond || s.Batches != 4 || s.Sent != 400 || s.Lost != 2 {
		t.Fatalf("sum %+v", s)
	}
	if s.Latency == nil || s.Latency.Samples != 6 || s.Latency.P50 != ms(10) || s.Latency.Max != ms(30) {
		t.Fatalf("latency %+v, want percentiles over all six samples", s.Latency)
	}
	if sumSides([]Side{side(5)}).Latency != nil {
		t.Fatal("a throughput side gained a latency")
	}
	p := newPhase("x", []Side{a, b}, []Side{side(200), side(300)}, "h", "r")
	if len(p.Rounds) != 2 || p.Rounds[0].Ratio() != 0.5 || p.Rounds[1].Ratio() != 1 || p.Ratio() != 0.8 {
		t.Fatalf("rounds %+v ratio %v", p.Rounds, p.Ratio())
	}
	if one := newPhase("x", []Side{a}, []Side{b}, "h", "r"); one.Rounds != nil {
		t.Fatalf("one round kept rounds: %+v", one.Rounds)
	}
}
