package benchrun

import (
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
		c.Duration != DefaultDuration || c.Rate != DefaultRate || c.Namespace == "" {
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
	} {
		err := tc.cfg.Fill()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Fill(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}
