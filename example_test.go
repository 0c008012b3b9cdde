package herald_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/heraldbus/herald"
)

// The examples connect to the Redis at HERALD_REDIS_URL (in `go test`, the
// redis-server that TestMain starts).

func ExampleClient_Publish() {
	ctx := context.Background()
	c, err := herald.New(ctx, herald.Config{URL: os.Getenv("HERALD_REDIS_URL"), Namespace: "example"})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// A topic has a fixed number of partitions; Publish would create a
	// missing topic with the default configuration.
	if err := c.CreateTopic(ctx, "orders", herald.TopicConfig{Partitions: 4}); err != nil {
		panic(err)
	}
	// Events with the same key land in the same partition, in order.
	pos, err := c.Publish(ctx, "orders", herald.Event{Type: "order.created", Key: "customer-7", Data: []byte(`{"order":1}`)})
	if err != nil {
		panic(err)
	}
	fmt.Println("partition:", pos.Partition)

	// An event whose ID the caller sets is stored once within the topic's
	// dedupe window: publishing it again returns the first position.
	ev := herald.Event{ID: "order-1-paid", Type: "order.paid", Key: "customer-7"}
	first, err := c.Publish(ctx, "orders", ev)
	if err != nil {
		panic(err)
	}
	again, err := c.Publish(ctx, "orders", ev)
	if err != nil {
		panic(err)
	}
	fmt.Println("duplicate:", again.Duplicate, "same position:", again.ID == first.ID)
	// Output:
	// partition: 1
	// duplicate: true same position: true
}

func ExampleClient_PublishAsync() {
	ctx := context.Background()
	c, err := herald.New(ctx, herald.Config{URL: os.Getenv("HERALD_REDIS_URL"), Namespace: "example"})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// PublishAsync returns at once; many events in flight share batches.
	futures := make([]*herald.PublishFuture, 1000)
	for i := range futures {
		futures[i] = c.PublishAsync(ctx, "clicks", herald.Event{Type: "page.clicked", Data: fmt.Appendf(nil, "%d", i)})
	}
	stored := 0
	for _, f := range futures {
		if _, err := f.Wait(ctx); err != nil {
			panic(err)
		}
		stored++
	}
	fmt.Println("stored:", stored)
	// Output:
	// stored: 1000
}

func ExampleClient_Subscribe() {
	ctx := context.Background()
	c, err := herald.New(ctx, herald.Config{URL: os.Getenv("HERALD_REDIS_URL"), Namespace: "example"})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// The group "billing" is created at the end of the topic: it receives
	// the events published from now on. Returning nil acknowledges an
	// event; an error retries it later, and dead-letters it in the end.
	// Handlers run concurrently by default (Concurrency).
	got := make(chan string)
	sub, err := c.Subscribe(ctx, "payments", "billing", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		got <- fmt.Sprintf("%s %s (attempt %d)", m.Type, m.Data, m.Attempt)
		return nil
	}), herald.Concurrency(1)) // one handler at a time: a partition's events in order
	if err != nil {
		panic(err)
	}
	for _, amount := range []string{"10.00", "25.50"} {
		if _, err := c.Publish(ctx, "payments", herald.Event{Type: "payment.received", Key: "customer-7", Data: []byte(amount)}); err != nil {
			panic(err)
		}
	}
	fmt.Println(<-got)
	fmt.Println(<-got)

	// Drain lets running handlers finish and sends their acknowledgements.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sub.Drain(dctx); err != nil {
		panic(err)
	}
	fmt.Println("handled:", sub.Stats().Handled)
	// Output:
	// payment.received 10.00 (attempt 1)
	// payment.received 25.50 (attempt 1)
	// handled: 2
}

func ExampleClient_Listen() {
	ctx := context.Background()
	c, err := herald.New(ctx, herald.Config{URL: os.Getenv("HERALD_REDIS_URL"), Namespace: "example"})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// Channels are live only (Redis Pub/Sub): a message reaches the
	// listeners connected when it is broadcast, and nothing is stored.
	l, err := c.Listen(ctx, herald.ListenConfig{Channels: []string{"example.news"}})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	if _, err := c.Broadcast(ctx, "example.news", []byte("deploy finished")); err != nil {
		panic(err)
	}
	for m := range l.Messages() {
		if m.Kind == "message" { // the others confirm subscription changes
			fmt.Printf("%s: %s\n", m.Channel, m.Data)
			break
		}
	}
	// Output:
	// example.news: deploy finished
}

func ExampleClient_Append() {
	ctx := context.Background()
	c, err := herald.New(ctx, herald.Config{URL: os.Getenv("HERALD_REDIS_URL"), Namespace: "example"})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// An entity stream (event sourcing): a new entity is at version 0.
	v, err := c.Append(ctx, "cart-42", 0, herald.Event{Type: "item.added", Data: []byte("apple")})
	if err != nil {
		panic(err)
	}
	fmt.Println("version:", v)

	// A writer that decided on version 0 is too late: nothing is written,
	// and the error says where the stream is now.
	_, err = c.Append(ctx, "cart-42", 0, herald.Event{Type: "item.added", Data: []byte("pear")})
	var conflict *herald.VersionConflictError
	if errors.As(err, &conflict) {
		fmt.Println("conflict, the stream is at version", conflict.Current)
	}
	// Read again, decide again, append at the current version.
	if _, err := c.Append(ctx, "cart-42", conflict.Current, herald.Event{Type: "item.removed", Data: []byte("apple")}); err != nil {
		panic(err)
	}

	events, err := c.Read(ctx, "cart-42", 1)
	if err != nil {
		panic(err)
	}
	for _, e := range events {
		fmt.Println(e.Version, e.Type, string(e.Data))
	}
	// Output:
	// version: 1
	// conflict, the stream is at version 1
	// 1 item.added apple
	// 2 item.removed apple
}
