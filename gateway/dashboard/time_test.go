package dashboard_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestScheduledCancelFromDashboard: a delayed event is listed on the
// Scheduled tab of its topic and cancelled from there after the
// confirmation; the library then finds it gone.
func TestScheduledCancelFromDashboard(t *testing.T) {
	e := newEnv(t, withKeys())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.c.CreateTopic(ctx, "reminders", herald.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []herald.Event{
		{ID: "call-42", Type: "reminder.call", Key: "ada", ContentType: "application/json", Data: []byte(`{"who":"ada"}`)},
		{ID: "call-43", Type: "reminder.call", Key: "grace", ContentType: "application/json", Data: []byte(`{"who":"grace"}`)},
	} {
		if _, err := e.c.Schedule(ctx, "reminders", ev, time.Now().Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}

	tb := e.tab()
	tb.open("/#/topic/reminders")
	tb.login(adminKey)
	tb.wait(10*time.Second, `document.getElementById('sched-count')?.textContent === '(2)'`)
	tb.click(`#tab-scheduled-btn`)
	tb.wait(10*time.Second, `document.querySelectorAll('tr.sched-row').length === 2 && location.hash.endsWith('?tab=scheduled')`)
	if due := eval[string](tb, `document.querySelector('tr.sched-row[data-id="call-42"] .due').textContent`); due != "in 10 min" && due != "in 9 min" {
		t.Errorf("due %q, want in 10 min", due)
	}
	tb.click(`tr.sched-row[data-id="call-42"] button.inspect`)
	tb.wait(5*time.Second, `document.querySelector('tr.inspect pre')?.textContent.includes('"who": "ada"')`)
	tb.shot("scheduled")
	// Cancel asks first: dismissing the dialog keeps the event.
	tb.click(`tr.sched-row[data-id="call-42"] button.cancel`)
	tb.wait(5*time.Second, `document.getElementById('confirm').open`)
	tb.click(`#confirm button[value="cancel"]`)
	tb.wait(5*time.Second, `!document.getElementById('confirm').open`)
	if _, total, err := e.c.ScheduledEvents(ctx, "reminders", herald.ScheduleFilter{}); err != nil || total != 2 {
		t.Fatalf("after a dismissed cancel: %d scheduled, %v; want 2", total, err)
	}
	tb.click(`tr.sched-row[data-id="call-42"] button.cancel`)
	tb.wait(5*time.Second, `document.getElementById('confirm').open`)
	tb.click(`#confirm-ok`)
	tb.wait(4*time.Second, `document.getElementById('toast').textContent.includes('Cancelled call-42')`) // a toast shows for 5 s
	tb.wait(10*time.Second, `document.querySelector('tr.sched-row[data-id="call-42"]') === null && document.querySelectorAll('tr.sched-row').length === 1`)
	evs, total, err := e.c.ScheduledEvents(ctx, "reminders", herald.ScheduleFilter{})
	if err != nil || total != 1 || len(evs) != 1 || evs[0].ID != "call-43" {
		t.Fatalf("after the cancel: %d scheduled (%v), %v; want only call-43", total, evs, err)
	}
}

// TestSeekToBeginningReplays: a group that handled three events is moved to
// the beginning from its Seek form (after the confirmation), and the
// running subscriber handles the three again. The topic page shows the
// group's consumer with the partition it owns.
func TestSeekToBeginningReplays(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.c.CreateTopic(ctx, "invoices", herald.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	sub, err := e.c.Subscribe(ctx, "invoices", "mailer", herald.HandlerFunc(func(context.Context, *herald.Message) error {
		handled.Add(1)
		return nil
	}), herald.Consumer("mailer-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	for i := range 3 {
		e.publish("invoices", herald.Event{Type: "invoice.sent", Key: "k" + string(rune('a'+i)), Data: []byte(`{"n":1}`)})
	}
	redistest.WaitFor(t, 10*time.Second, "3 events handled", func() bool { return handled.Load() == 3 })

	tb := e.tab()
	tb.open("/#/topic/invoices")
	tb.wait(10*time.Second, `document.querySelector('tr[data-group="mailer"] li[data-consumer="mailer-1"]')?.textContent.includes('owns partition 0')`)
	tb.wait(5*time.Second, `document.querySelector('tr.group-part[data-group="mailer"] .owner')?.textContent === 'mailer-1'`)
	tb.click(`tr[data-group="mailer"] button.seek`)
	tb.wait(5*time.Second, `document.getElementById('seek-to') === document.activeElement && document.getElementById('seek-to').value === 'beginning'`)
	tb.shot("seek")
	tb.click(`#seek-go`)
	tb.wait(5*time.Second, `document.getElementById('confirm').open && document.getElementById('confirm-text').textContent.includes('the beginning')`)
	if n := handled.Load(); n != 3 {
		t.Fatalf("%d handled before the seek was confirmed, want 3", n)
	}
	tb.click(`#confirm-ok`)
	redistest.WaitFor(t, 10*time.Second, "the 3 events replayed after the seek", func() bool { return handled.Load() >= 6 })
	tb.wait(5*time.Second, `document.getElementById('toast').textContent.includes('Group mailer moved to beginning')`)
	if n := handled.Load(); n != 6 {
		t.Errorf("%d handled after the seek, want 6", n)
	}
}
