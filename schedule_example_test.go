package herald_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/heraldbus/herald"
)

func ExampleDelay() {
	ctx := context.Background()
	c, err := herald.New(ctx, herald.Config{URL: os.Getenv("HERALD_REDIS_URL"), Namespace: "example-delay"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	got := make(chan string, 1)
	sub, err := c.Subscribe(ctx, "reminders", "mailer", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		got <- string(m.Data)
		return nil
	}))
	if err != nil {
		panic(err)
	}
	defer sub.Stop()

	// The event waits in the topic's schedule and reaches every group when due.
	start := time.Now()
	if _, err := c.Publish(ctx, "reminders", herald.Event{ID: "call-42", Data: []byte("call Ada back")}, herald.Delay(200*time.Millisecond)); err != nil {
		panic(err)
	}
	waiting, _, err := c.ScheduledEvents(ctx, "reminders", herald.ScheduleFilter{})
	if err != nil {
		panic(err)
	}
	fmt.Println("waiting:", waiting[0].ID)
	fmt.Println("delivered:", <-got, "after 200ms:", time.Since(start) >= 200*time.Millisecond)
	// Output:
	// waiting: call-42
	// delivered: call Ada back after 200ms: true
}

func ExampleClient_SeekGroup() {
	ctx := context.Background()
	c, err := herald.New(ctx, herald.Config{URL: os.Getenv("HERALD_REDIS_URL"), Namespace: "example-seek"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.DeleteTopic(ctx, "audit"); err != nil && !errorsIsNotFound(err) {
		panic(err)
	}
	// A group that starts at the end skips what is stored; seeking it back
	// to the beginning replays everything still in the topic.
	if err := c.CreateGroup(ctx, "audit", "replayer", herald.ToEnd()); err != nil {
		panic(err)
	}
	for _, s := range []string{"a", "b"} {
		if _, err := c.Publish(ctx, "audit", herald.Event{Data: []byte(s)}); err != nil {
			panic(err)
		}
	}
	res, err := c.SeekGroup(ctx, "audit", "replayer", herald.ToEnd())
	if err != nil {
		panic(err)
	}
	fmt.Println("moved partitions:", len(res.Partitions), "dropped:", res.Dropped)
	if _, err := c.SeekGroup(ctx, "audit", "replayer", herald.ToBeginning()); err != nil {
		panic(err)
	}
	gs, err := c.Groups(ctx, "audit")
	if err != nil {
		panic(err)
	}
	fmt.Println("to replay:", gs[0].Lag)
	// Output:
	// moved partitions: 1 dropped: 0
	// to replay: 2
}

func errorsIsNotFound(err error) bool { return err != nil && errors.Is(err, herald.ErrTopicNotFound) }
