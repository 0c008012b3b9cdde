// Command blog is Herald's seed scenario: a blog publishes article updates.
// Readers online now get a live notification on a channel (Redis Pub/Sub),
// and a durable subscriber of the "articles" topic that was offline catches
// up on everything it missed when it comes back.
//
// Run it against a Redis (default redis://127.0.0.1:6379, or HERALD_REDIS_URL):
//
//	go run .
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/heraldbus/herald"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	url := os.Getenv("HERALD_REDIS_URL")
	if url == "" {
		url = herald.DefaultURL
	}
	ns := fmt.Sprintf("blog-demo-%d", time.Now().UnixNano())
	c, err := herald.New(context.Background(), herald.Config{URL: url, Namespace: ns})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	liveChannel := ns + ":article.updated"

	// A reader's browser tab, online now: live notifications only.
	live, err := c.Listen(ctx, herald.ListenConfig{Channels: []string{liveChannel}})
	if err != nil {
		return err
	}
	defer live.Close()

	// The search indexer subscribes once (so its group exists), then goes offline.
	indexed := make(chan string, 10)
	index := herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		indexed <- fmt.Sprintf("%s %s", m.Type, m.Data)
		return nil
	})
	indexer, err := c.Subscribe(ctx, "articles", "search-indexer", index)
	if err != nil {
		return err
	}
	if err := indexer.Drain(ctx); err != nil {
		return err
	}
	fmt.Println("search indexer is offline")

	// The blog publishes: the durable event first, then the live notification.
	for i, title := range []string{"Redis Streams in practice", "Pub/Sub for live pages", "Retries done right"} {
		ev := herald.Event{Type: "article.updated", Key: fmt.Sprintf("article-%d", i+1), ContentType: "application/json",
			Data: []byte(fmt.Sprintf(`{"id":%d,"title":%q}`, i+1, title))}
		pos, err := c.Publish(ctx, "articles", ev)
		if err != nil {
			return err
		}
		n, err := c.Broadcast(ctx, liveChannel, ev.Data)
		if err != nil {
			return err
		}
		fmt.Printf("published %s at %s, notified %d live reader(s)\n", ev.Key, pos, n)
	}
	for got := 0; got < 3; {
		select {
		case m := <-live.Messages():
			if m.Kind == "message" {
				got++
				fmt.Printf("live reader got: %s\n", m.Data)
			}
		case <-ctx.Done():
			return errors.New("live notifications did not arrive")
		}
	}

	// The indexer comes back and catches up on what it missed.
	fmt.Println("search indexer is back")
	indexer, err = c.Subscribe(ctx, "articles", "search-indexer", index)
	if err != nil {
		return err
	}
	var caught []string
	for len(caught) < 3 {
		select {
		case s := <-indexed:
			caught = append(caught, s)
			fmt.Printf("indexer caught up: %s\n", s)
		case <-ctx.Done():
			return errors.New("the indexer did not catch up")
		}
	}
	if err := indexer.Drain(ctx); err != nil {
		return err
	}
	if err := c.DeleteTopic(ctx, "articles"); err != nil {
		return err
	}
	fmt.Printf("done: 3 live notifications, %d events caught up\n", len(caught))
	return nil
}
