package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestOverviewListsTopicWithLag: a topic whose group is 3 events behind is
// listed on the overview with lag 3; with keys off the page opens directly.
func TestOverviewListsTopicWithLag(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, name := range []string{"orders", "payments"} {
		if err := e.c.CreateTopic(ctx, name, herald.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := e.c.Subscribe(ctx, "orders", "billing", herald.HandlerFunc(func(context.Context, *herald.Message) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	sub.Stop() // the group exists and reads nothing more: what follows is lag
	<-sub.Done()
	for i := range 3 {
		e.publish("orders", herald.Event{Type: "order.created", Key: fmt.Sprint("c-", i), Data: []byte(`{"order":` + fmt.Sprint(i) + `}`)})
	}
	e.publish("payments", herald.Event{Type: "payment.received", Data: []byte(`{"amount":42}`)})

	tb := e.tab()
	tb.open("/")
	tb.wait(10*time.Second, `document.querySelector('tr[data-topic="orders"] .lag')?.dataset.lag === "3"`)
	if lt := eval[string](tb, `document.querySelector('tr[data-topic="orders"] .lag-time')?.textContent ?? ''`); !strings.HasSuffix(lt, " ms") && !strings.HasSuffix(lt, " s") {
		t.Errorf("oldest unread %q, want a duration", lt)
	}
	if who := eval[string](tb, `document.getElementById('who').textContent`); who != "API keys are off" {
		t.Errorf("session line %q, want %q", who, "API keys are off")
	}
	if eval[bool](tb, `document.getElementById('login').checkVisibility()`) {
		t.Error("the login field shows although keys are off")
	}
	tb.wait(10*time.Second, `document.body.textContent.includes('Standalone Redis')`)
	// The Redis node with its memory (INFO used_memory) and replication.
	tb.wait(10*time.Second, `Number(document.querySelector('tr[data-node] .memory')?.dataset.bytes) > 0`)
	if row := eval[string](tb, `document.querySelector('tr[data-node]').textContent`); !contains(row, "master", "ok", "B", "no replica") {
		t.Errorf("node row %q lacks role, health, memory or replication", row)
	}
	// The topic page: the group's lag in events and in time.
	tb.open("/#/topic/orders")
	tb.wait(10*time.Second, `document.querySelector('tr[data-group="billing"] .lag')?.textContent === '3'`)
	if lt := eval[string](tb, `document.querySelector('tr[data-group="billing"] .lag-time').textContent`); !strings.HasSuffix(lt, " ms") && !strings.HasSuffix(lt, " s") {
		t.Errorf("lag in time %q, want a duration", lt)
	}
	tb.open("/")
	tb.wait(10*time.Second, `document.querySelector('tr[data-topic="orders"] .lag')?.dataset.lag === "3"`)
	if update() {
		// A few seconds of traffic so that the sparklines have a shape.
		for i := range 16 {
			for j := range 15 * (i%5 + 1) {
				e.publish("payments", herald.Event{Type: "payment.received", Data: []byte(fmt.Sprint(`{"n":`, j, `}`))})
			}
			time.Sleep(time.Second) // not a condition: traffic spread over seconds gives the sparklines a shape
		}
		tb.wait(10*time.Second, `document.querySelectorAll('svg.spark polyline').length >= 2`)
		tb.shot("overview")
	}
}

// TestRedriveFromDashboard: an event that a group dead-lettered is redriven
// from the Dead letters page (logged in with an admin key, after the
// confirmation) and then handled by the subscriber.
func TestRedriveFromDashboard(t *testing.T) {
	e := newEnv(t, withKeys())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.c.CreateTopic(ctx, "payments", herald.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts := map[string]int{}
	handled := make(chan string, 4)
	sub, err := e.c.Subscribe(ctx, "payments", "ledger", herald.HandlerFunc(func(_ context.Context, m *herald.Message) error {
		mu.Lock()
		attempts[m.ID]++
		n := attempts[m.ID]
		mu.Unlock()
		if n == 1 {
			return herald.Permanent(errors.New("card declined: the ledger was down"))
		}
		handled <- m.ID
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	e.publish("payments", herald.Event{ID: "pay-1", Type: "payment.received", Key: "customer-7",
		Headers: map[string]string{"tenant": "eu"}, ContentType: "application/json", Data: []byte(`{"amount":42,"currency":"EUR"}`)})
	redistest.WaitFor(t, 10*time.Second, "the event to be dead-lettered", func() bool {
		dls, err := e.c.DeadLetters(ctx, "payments", herald.Query{})
		return err == nil && len(dls) == 1
	})

	tb := e.tab()
	tb.open("/#/deadletters/payments")
	tb.wait(5*time.Second, `document.body.textContent.includes('API key needed')`)
	tb.do(chromedp.SendKeys(chromedp.ID("key"), "not-a-key"), chromedp.Click(chromedp.CSS("#login button"), chromedp.NodeVisible))
	tb.wait(5*time.Second, `document.body.textContent.includes('The key was refused')`)
	tb.login(adminKey)
	tb.wait(10*time.Second, `document.querySelector('input[name="dl"]') !== null`)
	if txt := eval[string](tb, `document.querySelector('tr[data-position]').textContent`); !contains(txt, "card declined", "ledger", "pay-1") {
		t.Errorf("dead letter row %q lacks the error, group or id", txt)
	}
	tb.click(`tr[data-position] button`) // Inspect
	tb.wait(5*time.Second, `document.querySelector('tr.inspect pre')?.textContent.includes('"currency": "EUR"')`)
	tb.click(`input[name="dl"]`)
	tb.shot("deadletters")
	select {
	case id := <-handled:
		t.Fatalf("%s handled before the redrive", id)
	default:
	}
	tb.click(`#redrive-selected`)
	tb.wait(5*time.Second, `document.getElementById('confirm').open`)
	tb.click(`#confirm-ok`)
	select {
	case id := <-handled:
		if id != "pay-1" {
			t.Fatalf("handled %q, want pay-1", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the redriven event was not handled within 10 s")
	}
	tb.wait(10*time.Second, `document.body.textContent.includes('No dead letters in payments')`)
	if dls, err := e.c.DeadLetters(ctx, "payments", herald.Query{}); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters after the redrive: %d, %v", len(dls), err)
	}
}

// TestLiveTailShowsNewEvent: an event published after the Live tail page
// opened shows (within 10 s: the latency is logged; on an idle machine it
// is well under a second).
func TestLiveTailShowsNewEvent(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tb := e.tab()
	// Before any topic, the overview says how to make one.
	tb.open("/")
	tb.wait(5*time.Second, `document.body.textContent.includes('No topics yet. Publish an event to create one')`)
	if err := e.c.CreateTopic(ctx, "clicks", herald.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	tb.open("/#/tail")
	tb.wait(5*time.Second, `document.getElementById('tail-status')?.textContent === 'live'`)
	start := time.Now()
	e.publish("clicks", herald.Event{ID: "click-1", Type: "page.clicked", Key: "session-9", Data: []byte(`{"x":10}`)})
	tb.wait(10*time.Second, `document.querySelector('tr.tail-row[data-id="click-1"]') !== null`)
	t.Logf("the event showed %v after its publish", time.Since(start).Round(time.Millisecond))
	if row := eval[string](tb, `document.querySelector('tr.tail-row[data-id="click-1"]').textContent`); !contains(row, "clicks", "page.clicked") {
		t.Errorf("tail row %q lacks the topic or type", row)
	}
	// Pause: new events are counted, not shown.
	tb.click(`#tail-pause`)
	e.publish("clicks", herald.Event{ID: "click-2", Type: "page.clicked", Data: []byte(`{}`)})
	tb.wait(10*time.Second, `document.getElementById('tail-status').textContent.startsWith('paused, 1 ')`)
	if eval[bool](tb, `document.querySelector('tr.tail-row[data-id="click-2"]') !== null`) {
		t.Error("a paused tail showed a new event")
	}
	tb.click(`#tail-pause`)
	if update() {
		for i := range 12 {
			e.publish("clicks", herald.Event{Type: "page.clicked", Key: fmt.Sprint("session-", i%3), Data: []byte(`{"x":1}`)})
		}
		tb.wait(3*time.Second, `document.querySelectorAll('tr.tail-row').length >= 12 && document.getElementById('tail-rate').textContent !== '0/s'`)
		tb.shot("tail")
	}
}

// TestReadOnlyKeySeesNoRedrive: a key without an admin grant reads events
// but sees no redrive (or delete) button anywhere.
func TestReadOnlyKeySeesNoRedrive(t *testing.T) {
	e := newEnv(t, withKeys())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.c.CreateTopic(ctx, "audit", herald.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	sub, err := e.c.Subscribe(ctx, "audit", "archiver", herald.HandlerFunc(func(context.Context, *herald.Message) error {
		return herald.Permanent(errors.New("archive full"))
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	e.publish("audit", herald.Event{ID: "audit-1", Type: "user.login", Data: []byte(`{"user":"ada"}`)})
	redistest.WaitFor(t, 10*time.Second, "a dead letter", func() bool {
		dls, err := e.c.DeadLetters(ctx, "audit", herald.Query{})
		return err == nil && len(dls) == 1
	})
	noButtons := `![...document.querySelectorAll('button')].some(b => /redrive|delete/i.test(b.textContent))`

	tb := e.tab()
	tb.open("/#/topic/audit")
	tb.login(readerKey)
	tb.wait(10*time.Second, `document.querySelector('details.event[data-position]') !== null`)
	if who := eval[string](tb, `document.getElementById('who').textContent`); who != "read-only key" {
		t.Errorf("session line %q, want read-only key", who)
	}
	if !eval[bool](tb, noButtons) {
		t.Error("the topic page shows a redrive or delete button to a read-only key")
	}
	if eval[bool](tb, `document.querySelector('button.seek, button.cancel, #tab-scheduled-btn, #seek-form') !== null`) {
		t.Error("the topic page shows a seek or cancel action, or the Scheduled tab, to a read-only key")
	}
	tb.open("/#/deadletters/audit")
	tb.wait(10*time.Second, `document.body.textContent.includes('This key cannot read dead letters')`)
	if !eval[bool](tb, noButtons) {
		t.Error("the dead letters page shows a redrive or delete button to a read-only key")
	}
	tb.shot("readonly")
}

// TestEveryPage visits every page with an admin key: each renders its data
// (the cleanup checks the console and the origins of every request).
func TestEveryPage(t *testing.T) {
	e := newEnv(t, withKeys())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.c.CreateTopic(ctx, "articles/eu", herald.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	e.publish("articles/eu", herald.Event{ID: "a-1", Type: "article.published", Key: "a-1", ContentType: "application/json",
		Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, Data: []byte(`{"title":"Hello","tags":["go","redis"]}`)})
	e.publish("articles/eu", herald.Event{ID: "a-2", Type: "article.text", ContentType: "text/plain", Data: []byte("plain words")})
	e.publish("articles/eu", herald.Event{ID: "a-3", Type: "article.thumbnail", ContentType: "image/png", Data: []byte{0x89, 'P', 'N', 'G', 0, 1, 2, 0xff}})

	tb := e.tab()
	tb.open("/")
	tb.login(adminKey)
	tb.wait(10*time.Second, `document.querySelector('tr[data-topic="articles/eu"]') !== null`)
	// The keyboard alone: Tab reaches the skip link first, then the brand and
	// the navigation; Enter on "Dead letters" opens that page.
	tb.open("/ui/") // a fresh load (the key stays in the tab's sessionStorage)
	tb.wait(10*time.Second, `document.querySelector('tr[data-topic="articles/eu"]') !== null`)
	tb.do(chromedp.KeyEvent(kb.Tab))
	if id := eval[string](tb, `document.activeElement.id`); id != "skip" {
		t.Errorf("first Tab focuses #%s, want the skip link", id)
	}
	tb.do(chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Tab))
	if txt := eval[string](tb, `document.activeElement.textContent`); txt != "Dead letters" {
		t.Errorf("fourth Tab focuses %q, want the Dead letters link", txt)
	}
	tb.do(chromedp.KeyEvent(kb.Enter))
	tb.wait(5*time.Second, `location.hash === '#/deadletters' && document.querySelector('#dl-topic') !== null`)
	tb.open("/")
	tb.wait(10*time.Second, `document.querySelector('tr[data-topic="articles/eu"]') !== null`)
	tb.wait(10*time.Second, `document.body.textContent.includes('open stream')`)

	tb.click(`tr[data-topic="articles/eu"] a`)
	tb.wait(10*time.Second, `document.querySelectorAll('details.event').length === 3 && document.querySelectorAll('#main table').length >= 1`)
	tb.click(`details.event[data-id="a-3"] summary`) // binary
	tb.wait(5*time.Second, `document.querySelector('details.event[open] pre')?.textContent.startsWith('00000000  89 50 4e 47')`)
	tb.shot("topic")

	tb.open("/#/deadletters/articles%2Feu")
	tb.wait(10*time.Second, `document.body.textContent.includes('No dead letters in articles/eu')`)

	tb.open("/#/channels")
	tb.wait(5*time.Second, `document.getElementById('ch-sub') !== null`)
	tb.do(chromedp.SendKeys(chromedp.ID("ch-sub"), "chat.*"))
	tb.click(`#ch-pattern`)
	tb.click(`#ch-subscribe`)
	tb.wait(5*time.Second, `document.getElementById('ch-status').textContent.startsWith('subscribed')`)
	tb.do(chromedp.SendKeys(chromedp.ID("ch-pub"), "chat.lobby"), chromedp.SendKeys(chromedp.ID("ch-body"), "hello from the dashboard"))
	tb.click(`#ch-publish`)
	tb.wait(5*time.Second, `document.querySelector('#ch-messages .ch-message')?.textContent.includes('hello from the dashboard')`)
	tb.wait(5*time.Second, `document.getElementById('toast').textContent.includes('1 receiver')`)
	tb.shot("channels")

	tb.open("/#/tail?topics=articles*")
	tb.wait(5*time.Second, `document.getElementById('tail-status')?.textContent === 'live'`)
	if v := eval[string](tb, `document.getElementById('tail-topics').value`); v != "articles*" {
		t.Errorf("tail filter %q, want articles*", v)
	}

	// Numbers are formatted for reading.
	got := eval[[]string](tb, `(async () => { const f = await import('/ui/js/format.js');
		return [f.num(1234), f.rate(1234), f.rate(0.5), f.num(2500000), f.ago(Date.now() - 3000), f.bytes(1536), f.duration(90)]; })()`, chromedp.EvalAwaitPromise)
	want := []string{"1.2k", "1.2k/s", "0.5/s", "2.5M", "3 s ago", "1.5 kB", "2 min"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("formatted numbers %q, want %q", got, want)
	}

	tb.open("/#/nowhere")
	tb.wait(5*time.Second, `document.querySelector('h1')?.textContent === 'Not found'`)

	// A phone's width: the overview still fits (no horizontal scroll of the page).
	tb.do(chromedp.EmulateViewport(390, 844))
	tb.open("/")
	tb.wait(10*time.Second, `document.querySelector('tr[data-topic="articles/eu"]') !== null`)
	if w := eval[int](tb, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("at phone width the page is %d px wide", w)
	}
	tb.shot("phone")
	tb.open("/#/topic/articles%2Feu")
	tb.wait(10*time.Second, `document.querySelectorAll('details.event').length === 3 && document.querySelector('#tab-scheduled-btn') !== null`)
	if w := eval[int](tb, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("at phone width the topic page is %d px wide", w)
	}
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

func update() bool { return os.Getenv("HERALD_UPDATE_SCREENSHOTS") == "1" }
