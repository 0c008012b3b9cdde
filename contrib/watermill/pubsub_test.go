package watermill_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	wm "github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/subscriber"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/heraldbus/herald"
	heraldwm "github.com/heraldbus/herald/contrib/watermill"
)

var (
	// restartAddr turns the test binary into the suite's
	// RestartServiceCommand: it restarts the redis-server at this address.
	restartAddr = flag.String("herald.restart-redis", "", "restart the redis-server at this address (DEBUG RESTART) and exit")
	redisURL    string
	redisAddr   string
	// raceDetector is set in race builds (race_test.go).
	raceDetector bool
)

func TestMain(m *testing.M) {
	flag.Parse()
	if *restartAddr != "" {
		os.Exit(restartRedis(*restartAddr))
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("HERALD_REQUIRE_REDIS") == "1" {
			fmt.Fprintln(os.Stderr, "HERALD_REQUIRE_REDIS=1 but redis-server is not installed (apt-get install -y redis-server)")
			os.Exit(1)
		}
		os.Exit(m.Run()) // every test skips (needRedis)
	}
	srv, err := startRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start redis-server:", err)
		os.Exit(1)
	}
	redisURL, redisAddr = "redis://"+srv.addr, srv.addr
	code := m.Run()
	srv.stop()
	os.Exit(code)
}

// needRedis skips a test when redis-server is not installed (TestMain has
// failed the run already if HERALD_REQUIRE_REDIS=1).
func needRedis(t *testing.T) {
	t.Helper()
	if redisAddr == "" {
		t.Skip("redis-server is not installed")
	}
}

// suiteNamespace keeps this run's keys apart from other runs on the server.
var suiteNamespace = fmt.Sprintf("wmt%d", time.Now().UnixNano()%1e9)

func heraldConfig() herald.Config {
	return herald.Config{URL: redisURL, Namespace: suiteNamespace}
}

// subscribeOptions retry a nacked message soon and often, as the suite
// nacks some messages many times; a stopped subscription's unacked
// messages go back to the group at once (ErrRelease), and a crashed one's
// after a second.
func subscribeOptions() []herald.SubscribeOption {
	return []herald.SubscribeOption{
		herald.Backoff(10*time.Millisecond, 100*time.Millisecond),
		herald.MaxAttempts(1000),
		herald.VisibilityTimeout(time.Second),
		herald.BlockTime(200 * time.Millisecond),
	}
}

func newPubSub(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub, err := heraldwm.NewPublisher(ctx, heraldwm.PublisherConfig{Herald: heraldConfig()})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := heraldwm.NewSubscriber(ctx, heraldwm.SubscriberConfig{Herald: heraldConfig(), ConsumerGroup: group,
		Start: herald.StartBeginning, Options: subscribeOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return pub, sub
}

// createPubSub gives each Publisher/Subscriber pair a consumer group of its
// own, as watermill-redisstream's test does: subscribers of different
// pairs each receive every message.
func createPubSub(t *testing.T) (message.Publisher, message.Subscriber) {
	return newPubSub(t, "g-"+wm.NewShortUUID())
}

func createPubSubWithConsumerGroup(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	return newPubSub(t, group)
}

func features() tests.Features {
	return tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false, // at-least-once: a handed-back or retried event comes again
		// Herald's ordered delivery (the default since engine v2): one
		// consumer of a group reads a partition at a time (a lease), and
		// with one message out per subscription (Concurrency 1) a partition
		// is delivered in stream order, with several subscribers too.
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: false,
		Persistent:                          true,
		RequireSingleInstance:               false,
		NewSubscriberReceivesOldMessages:    true, // a new group starts at the beginning (Start)
		// Herald survives restarts (TestReconnectThroughRestarts), but the
		// suite's TestReconnect cannot pass reliably: it compares what was
		// received with a slice that a goroutine appends published messages
		// to, unsynchronized (test_pubsub.go:1086 and :1120). Herald delivers
		// the last message before that append in about one run of three
		// ("received: 10000, sent: 9999"), and -race reports the race.
		// Without a command the suite skips it.
		RestartServiceCommand: nil,
		// The full sizes (up to 10,000 messages per test; 50 subscribers
		// with a group each, 250,000 deliveries) take ~10s, but ~100s under
		// the race detector on 2 cores: race builds use the suite's short
		// sizes unless HERALD_WATERMILL_FULL=1. .ci/run runs both.
		ForceShort: raceDetector && os.Getenv("HERALD_WATERMILL_FULL") != "1",
	}
}

func TestPubSub(t *testing.T) {
	needRedis(t)
	tests.TestPubSub(t, features(), createPubSub, createPubSubWithConsumerGroup)
}

// With a group of its own per pair, the suite's "continue after subscriber
// close" reads every message again with each new subscriber. With one group
// shared by all pairs it checks what it means to: subscribers that come and
// go in a group lose no message.
func TestContinueAfterSubscribeCloseSharedGroup(t *testing.T) {
	needRedis(t)
	t.Parallel()
	group := "shared-" + wm.NewShortUUID()
	tests.TestContinueAfterSubscribeClose(t, tests.TestContext{TestID: tests.NewTestID(), Features: features()},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return newPubSub(t, group) })
}

// Herald orders events per partition key within a group. With the key set
// from what the suite's order test groups by (the payload), on a topic of
// four partitions, ten subscribers sharing one group (each holding the
// leases of some partitions) still see each key's messages in publish order.
func TestOrderPerKeySharedGroupPartitioned(t *testing.T) {
	needRedis(t)
	t.Parallel()
	f := features()
	f.GuaranteedOrder, f.GuaranteedOrderWithSingleSubscriber = true, false
	f.GenerateTopicFunc = func(tCtx tests.TestContext) string { return "topic-p4-" + tCtx.TestID.String() }
	cfg := heraldConfig()
	cfg.DefaultTopic.Partitions = 4
	group := "ordered-" + wm.NewShortUUID()
	tCtx := tests.TestContext{TestID: tests.NewTestID(), Features: f}
	defer func() {
		// The messages really were spread over the four partitions.
		info, err := newClient(t).TopicInfo(context.Background(), f.GenerateTopicFunc(tCtx))
		if err != nil {
			t.Fatal(err)
		}
		used := 0
		for _, p := range info.Partitions {
			if p.Length > 0 {
				used++
			}
		}
		if len(info.Partitions) != 4 || used < 2 {
			t.Fatalf("topic has %d partitions, %d of them used; want 4, several used", len(info.Partitions), used)
		}
	}()
	tests.TestPublishSubscribeInOrder(t, tCtx,
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pub, err := heraldwm.NewPublisher(ctx, heraldwm.PublisherConfig{Herald: cfg,
				Key: func(_ string, m *message.Message) string { return string(m.Payload) }})
			if err != nil {
				t.Fatal(err)
			}
			sub, err := heraldwm.NewSubscriber(ctx, heraldwm.SubscriberConfig{Herald: cfg, ConsumerGroup: group,
				Start: herald.StartBeginning, Options: subscribeOptions()})
			if err != nil {
				t.Fatal(err)
			}
			return pub, sub
		})
}

// TestReconnectThroughRestarts is the suite's TestReconnect without its
// race: 10,000 messages from 100 publishers into one subscription while the
// redis-server restarts twice (from 1/3 and from 1/2 of the messages, one
// after the other; DEBUG RESTART run by a separate process, as the suite
// runs RestartServiceCommand, checking the server's run id changed); every
// published message must arrive. Not parallel: it restarts the shared server.
func TestReconnectThroughRestarts(t *testing.T) {
	needRedis(t)
	const messages, publishers = 10000, 100
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pub, sub := createPubSub(t)
	topic := "topic-reconnect-" + wm.NewShortUUID()
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	work := make(chan struct{})
	published := make(chan string, messages)
	var pubs, restarts sync.WaitGroup
	restartErrs := make(chan error, 2)
	for range publishers {
		pubs.Go(func() {
			for range work {
				msg := message.NewMessage(wm.NewUUID(), []byte("x"))
				for try := 0; ; try++ {
					err := pub.Publish(topic, msg)
					if err == nil {
						break
					}
					if try == 50 {
						t.Errorf("publish %s: %v (50 tries)", msg.UUID, err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				published <- msg.UUID
			}
		})
	}
	for i := range messages {
		if i == messages/3 || i == messages/2 {
			restarts.Wait() // one restart at a time
			restarts.Go(func() {
				out, err := exec.Command(exe, "-herald.restart-redis="+redisAddr).CombinedOutput()
				if err != nil {
					err = fmt.Errorf("restart: %w: %s", err, out)
				}
				restartErrs <- err
			})
		}
		work <- struct{}{}
	}
	close(work)
	received, all := subscriber.BulkReadWithDeduplication(msgs, messages, time.Minute)
	pubs.Wait()
	restarts.Wait()
	close(published)
	close(restartErrs)
	for err := range restartErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !all {
		t.Errorf("received %d of %d messages", len(received), messages)
	}
	sent := map[string]bool{}
	for id := range published {
		sent[id] = true
	}
	got := map[string]bool{}
	for _, m := range received {
		got[m.UUID] = true
		if !sent[m.UUID] {
			t.Errorf("received %s, which was not published", m.UUID)
		}
	}
	for id := range sent {
		if !got[id] {
			t.Errorf("published %s, not received", id)
		}
	}
	if len(sent) != messages {
		t.Errorf("published %d messages, want %d", len(sent), messages)
	}
	if err := pub.Close(); err != nil {
		t.Error(err)
	}
	if err := sub.Close(); err != nil {
		t.Error(err)
	}
}
