package gateway_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestMetricsLint: after publishes, an SSE group stream with acks and
// nacks, a live tail and a failing webhook, the gateway's /metrics passes
// the Prometheus linter (and promtool check metrics where installed), and
// herald_deliveries_total uses only the documented outcome set
// (herald.Outcome*).
func TestMetricsLint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{Webhooks: []gateway.Webhook{{Name: "down", Topic: "ml", URL: "http://127.0.0.1:1/hook",
		From: "beginning", Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, MaxAttempts: 2}}})
	tail := e.openSSE("/v1/topics/ml/events", nil)
	group := e.openSSE("/v1/topics/ml/events?group=g&from=beginning&ack=auto", nil)
	for i := 0; i < 3; i++ {
		e.publish("ml", `{"data":{"n":1}}`, map[string]string{"Content-Type": "application/json"})
	}
	tail.next(t, "", 5*time.Second)
	group.next(t, "", 5*time.Second)
	redistest.WaitFor(t, 10*time.Second, "2 webhook deliveries and 1 SSE delivery in the metrics", func() bool {
		return metricSum(e, "herald_deliveries_total", `via="webhook"`) >= 2 && metricSum(e, "herald_deliveries_sent_total", `via="sse"`, `group=""`) >= 1
	})

	problems, err := testutil.GatherAndLint(e.g.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	_, body := e.do("GET", "/metrics", nil, nil)
	allowed := map[string]bool{herald.OutcomeOK: true, herald.OutcomeDuplicate: true, herald.OutcomeError: true, herald.OutcomeTimeout: true,
		herald.OutcomeFiltered: true, herald.OutcomeRetry: true, herald.OutcomeDeadLetter: true}
	seen := 0
	for _, l := range strings.Split(string(body), "\n") {
		_, rest, ok := strings.Cut(l, `outcome="`)
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		seen++
		if v, _, _ := strings.Cut(rest, `"`); !allowed[v] {
			t.Errorf("outcome %q outside the documented set: %s", v, l)
		}
	}
	if seen == 0 {
		t.Error("no series with an outcome label")
	}

	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = strings.NewReader(string(body))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: promtool check metrics not run")
	}
}
