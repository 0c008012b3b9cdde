package watermill_test

import (
	"context"
	"time"

	wm "github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald"
	heraldwm "github.com/heraldbus/herald/contrib/watermill"
)

// A Watermill router consuming a Herald topic in a consumer group: a
// handler that returns nil acks the message, an error nacks it and Herald
// retries it after its backoff.
func Example() {
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	client, err := herald.New(ctx, herald.Config{URL: "redis://127.0.0.1:6379"})
	if err != nil {
		panic(err)
	}
	defer client.Close()

	pub, err := heraldwm.NewPublisher(ctx, heraldwm.PublisherConfig{Client: client})
	if err != nil {
		panic(err)
	}
	sub, err := heraldwm.NewSubscriber(ctx, heraldwm.SubscriberConfig{
		Client:        client,
		ConsumerGroup: "billing",             // subscribers with one group share the messages
		Start:         herald.StartBeginning, // a new group reads what is already stored
		Options:       []herald.SubscribeOption{herald.Backoff(100*time.Millisecond, time.Minute)},
	})
	if err != nil {
		panic(err)
	}
	defer sub.Close()

	router, err := message.NewRouter(message.RouterConfig{}, wm.NopLogger{})
	if err != nil {
		panic(err)
	}
	router.AddConsumerHandler("bill", "orders", sub, func(m *message.Message) error {
		return nil // Ack; an error would Nack
	})
	if err := pub.Publish("orders", message.NewMessage(wm.NewUUID(), []byte(`{"order":7}`))); err != nil {
		panic(err)
	}
	_ = router.Run(ctx)
}
