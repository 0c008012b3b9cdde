package herald_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
)

// A group is either ordered or unordered: while consumers of one mode are
// live, a subscription of the other mode is refused with an error that says
// what to do; once they are gone, the group may change mode.
func TestGroupModesDoNotMix(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	h := herald.HandlerFunc(func(context.Context, *herald.Message) error { return nil })
	ordered, err := c.Subscribe(ctx, "modes", "g", h, herald.Consumer("o1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Subscribe(ctx, "modes", "g", h, herald.Unordered(), herald.Consumer("u1"))
	if !errors.Is(err, herald.ErrInvalid) || !strings.Contains(err.Error(), "ordered consumers (o1)") || !strings.Contains(err.Error(), "without Unordered") {
		t.Fatalf("unordered subscription to an ordered group: %v, want an ErrInvalid naming o1 and the fix", err)
	}
	// Another group of the same topic is free to be unordered.
	other, err := c.Subscribe(ctx, "modes", "other", h, herald.Unordered(), herald.Consumer("u1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ordered.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	unordered, err := c.Subscribe(ctx, "modes", "g", h, herald.Unordered(), herald.Consumer("u2"))
	if err != nil {
		t.Fatalf("unordered subscription once the ordered consumer left: %v", err)
	}
	_, err = c.Subscribe(ctx, "modes", "g", h, herald.Consumer("o2"))
	if !errors.Is(err, herald.ErrInvalid) || !strings.Contains(err.Error(), "unordered consumers (u2)") {
		t.Fatalf("ordered subscription to an unordered group: %v, want an ErrInvalid naming u2", err)
	}
	if _, err := c.Subscribe(ctx, "modes", "other", h, herald.Consumer("o3")); err == nil || !strings.Contains(err.Error(), "unordered consumers (u1)") {
		t.Fatalf("ordered subscription to the other (unordered) group: %v", err)
	}
	for _, s := range []*herald.Subscription{unordered, other} {
		if err := s.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	o4, err := c.Subscribe(ctx, "modes", "g", h, herald.Consumer("o4"))
	if err != nil {
		t.Fatalf("ordered subscription once the unordered consumers left: %v", err)
	}
	_ = o4.Drain(ctx)
}
