package watermill_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	wm "github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/heraldbus/herald"
	heraldwm "github.com/heraldbus/herald/contrib/watermill"
	"github.com/heraldbus/herald/internal/redisproc"
)

var (
	// restartAddr turns the test binary into the suite's
	// RestartServiceCommand: it restarts the redis-server at this address.
	restartAddr = flag.String("herald.restart-redis", "", "restart the redis-server at this address (DEBUG RESTART) and exit")
	redisURL    string
	redisAddr   string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if *restartAddr != "" {
		os.Exit(restartRedis(*restartAddr))
	}
	if !redisproc.Installed() {
		if os.Getenv("HERALD_REQUIRE_REDIS") == "1" {
			fmt.Fprintln(os.Stderr, "HERALD_REQUIRE_REDIS=1 but redis-server is not installed (apt-get install -y redis-server)")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "redis-server is not installed: skipping the Watermill suite")
		os.Exit(0)
	}
	// AOF on, so the restart of TestReconnect keeps what was published;
	// DEBUG RESTART (graceful: AOF flushed, same pid) needs the debug command.
	srv, err := redisproc.Start(context.Background(), redisproc.Options{AppendOnly: true,
		Args: []string{"--enable-debug-command", "local"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start redis-server:", err)
		os.Exit(1)
	}
	redisURL, redisAddr = srv.URL(), srv.Addr()
	code := m.Run()
	srv.Stop()
	os.Exit(code)
}

// restartRedis restarts the server gracefully, waits until it answers and
// checks that it is a new run of the server (its run_id changed).
func restartRedis(addr string) int {
	before, err := runID(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "restart: INFO server:", err)
		return 1
	}
	_, _ = redisproc.Command(addr, 5*time.Second, "DEBUG", "RESTART") // the connection drops
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if after, err := runID(addr); err == nil {
			if after == before {
				fmt.Fprintln(os.Stderr, "restart: redis-server at", addr, "kept run_id", before, "(DEBUG RESTART did nothing)")
				return 1
			}
			return 0
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "restart: redis-server at", addr, "did not come back within 20s")
	return 1
}

func runID(addr string) (string, error) {
	info, err := redisproc.Command(addr, time.Second, "INFO", "server")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "run_id:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no run_id in INFO server")
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
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false, // at-least-once: a handed-back or retried event comes again
		// Not with several subscribers in a group: any consumer reads any
		// entry of a partition, and a nacked message is retried after later
		// ones. TestOrderSingleSubscriber checks the single-subscriber case.
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		RequireSingleInstance:               false,
		NewSubscriberReceivesOldMessages:    true, // a new group starts at the beginning (Start)
		RestartServiceCommand:               []string{exe, "-herald.restart-redis=" + redisAddr},
		// The full sizes (10,000 messages per test, 50 subscribers) take
		// minutes on a small CI machine; HERALD_WATERMILL_FULL=1 runs them.
		ForceShort: os.Getenv("HERALD_WATERMILL_FULL") != "1",
	}
}

func TestPubSub(t *testing.T) {
	tests.TestPubSub(t, features(), createPubSub, createPubSubWithConsumerGroup)
}

// The suite skips its order tests because several subscribers of one group
// do not keep order. One subscriber with one message out at a time does:
// run those tests with the features that say so.
func TestOrderSingleSubscriber(t *testing.T) {
	f := features()
	f.GuaranteedOrder, f.GuaranteedOrderWithSingleSubscriber = true, true
	for name, fn := range map[string]func(*testing.T, tests.TestContext, tests.PubSubConstructor){
		"TestPublishSubscribeInOrder": tests.TestPublishSubscribeInOrder,
		"TestNoAck":                   tests.TestNoAck,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, tests.TestContext{TestID: tests.NewTestID(), Features: f}, createPubSub)
		})
	}
}

// With a group of its own per pair, the suite's "continue after subscriber
// close" reads every message again with each new subscriber. With one group
// shared by all pairs it checks what it means to: subscribers that come and
// go in a group lose no message.
func TestContinueAfterSubscribeCloseSharedGroup(t *testing.T) {
	t.Parallel()
	group := "shared-" + wm.NewShortUUID()
	tests.TestContinueAfterSubscribeClose(t, tests.TestContext{TestID: tests.NewTestID(), Features: features()},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return newPubSub(t, group) })
}
