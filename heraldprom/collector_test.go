package heraldprom_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/heraldprom"
	"github.com/heraldbus/herald/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// A client publishes (one duplicate), a group handles the events (one
// fails for good: a dead letter) and another group reads nothing: the
// collector's output passes the Prometheus linter and says all of it.
func TestCollectorCountsAndLints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := herald.New(ctx, herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateGroup(ctx, "orders", "idle", herald.ToBeginning()); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		ev := herald.Event{Type: "t", Data: []byte("x")}
		if i == 4 {
			ev.ID = "dup-1"
		}
		if _, err := c.Publish(ctx, "orders", ev); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := c.Publish(ctx, "orders", herald.Event{ID: "dup-1", Type: "t"}); err != nil || !p.Duplicate {
		t.Fatalf("second publish of dup-1: %+v, %v; want a duplicate", p, err)
	}
	var seen atomic.Int64
	sub, err := c.Subscribe(ctx, "orders", "billing", herald.HandlerFunc(func(_ context.Context, m *herald.Message) error {
		defer seen.Add(1)
		if m.ID == "dup-1" {
			return herald.Permanent(errors.New("bad order"))
		}
		return nil
	}), herald.From(herald.StartBeginning))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for seen.Load() < 5 || sub.Stats().DeadLettered < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("handled %d of 5, dead-lettered %d", seen.Load(), sub.Stats().DeadLettered)
		}
		time.Sleep(10 * time.Millisecond)
	}
	sub.Stop()
	<-sub.Done()

	col := heraldprom.NewCollector(c)
	problems, err := testutil.CollectAndLint(col)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	want := map[string]float64{
		`herald_publish_events_total{outcome="ok",topic="orders"}`:                      5,
		`herald_publish_events_total{outcome="duplicate",topic="orders"}`:               1,
		`herald_consumer_handled_total{group="billing",outcome="ok",topic="orders"}`:    4,
		`herald_consumer_handled_total{group="billing",outcome="error",topic="orders"}`: 1,
		`herald_consumer_dead_letters_total{group="billing",topic="orders"}`:            1,
		`herald_consumer_retries_total{group="billing",topic="orders"}`:                 0,
		`herald_group_dead_letters{group="billing",topic="orders"}`:                     1,
		`herald_group_consumers{group="idle",topic="orders"}`:                           0,
		`herald_group_metrics_read_success`:                                             1,
	}
	got := gather(t, reg)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if lag := got[`herald_group_lag_seconds{group="idle",topic="orders"}`]; lag <= 0 || lag > 60 {
		t.Errorf("idle group's lag = %vs, want the age of the first event (0 < lag < 60)", lag)
	}
	if lag, ok := got[`herald_group_lag_seconds{group="billing",topic="orders"}`]; !ok || lag != 0 {
		t.Errorf("billing group's lag = %v (present %v), want 0: it read everything", lag, ok)
	}
	if got[`herald_consumer_handler_duration_seconds_count{group="billing",topic="orders"}`] != 5 {
		t.Errorf("handler duration count = %v, want 5", got[`herald_consumer_handler_duration_seconds_count{group="billing",topic="orders"}`])
	}
	found := false
	for k := range got {
		if strings.HasPrefix(k, "herald_build_info{") {
			found = true
		}
	}
	if !found {
		t.Error("herald_build_info missing")
	}

	// Excluded metrics are left out of both Describe and Collect.
	ex := heraldprom.NewCollector(c, heraldprom.Exclude("herald_group_dead_letters"), heraldprom.GroupRefresh(0))
	reg2 := prometheus.NewPedanticRegistry()
	reg2.MustRegister(ex)
	for k := range gather(t, reg2) {
		if strings.HasPrefix(k, "herald_group_dead_letters") {
			t.Errorf("excluded metric present: %s", k)
		}
	}

	// promtool, where installed, checks the exposition too.
	if path, err := exec.LookPath("promtool"); err == nil {
		var sb strings.Builder
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&sb, mf); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = strings.NewReader(sb.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: promtool check metrics not run")
	}
}

// gather returns every sample of reg as name{labels} -> value (histograms:
// _count and _sum).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			key := func(suffix string) string {
				if len(ls) == 0 {
					return mf.GetName() + suffix
				}
				return mf.GetName() + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}
