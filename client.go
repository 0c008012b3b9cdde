package herald

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// Client publishes, subscribes and inspects. It is safe for concurrent use.
type Client struct {
	cfg    Config
	db     *rdb.DB
	log    *slog.Logger
	topics topics

	mu     sync.Mutex
	closed bool
	subs   map[*Subscription]struct{}

	// Publish calls and Shutdown meet in publishing: its low bits count the
	// calls between enterPublish and their hand-off to the writers, and
	// closingBit is set by Shutdown. One atomic, so that once closingBit is
	// set and the count is 0, no call can still enter: publishIdle is then
	// closed (by Shutdown or by the last call to leave).
	publishing  atomic.Int64
	publishIdle chan struct{}
	idleOnce    sync.Once
	writers     sync.WaitGroup // flushing partition writers
	pending     *slots         // one slot per unsettled PublishAsync event (slots.go)
	connOnce    sync.Once      // closes the connection once
	health      health
	stats       clientStats
	tracing     tracing       // tracing.go
	metrics     clientMetrics // metrics.go

	// testHookAppended, when set, runs after each append script returns and
	// may turn a success into an error (tests simulate a lost reply with it).
	testHookAppended func() error
}

// DefaultDialTimeout bounds New when its context has no deadline.
const DefaultDialTimeout = 10 * time.Second

// closingBit marks Client.publishing once Shutdown or Close has begun.
const closingBit = 1 << 62

// New connects to Redis and returns a Client. Dialing stops when ctx ends
// (or after DefaultDialTimeout when ctx has no deadline); ctx is not kept.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	// The producer's sequence numbers start at 1 with every Client, so its
	// idempotency state must be its own: a random epoch follows the name (a
	// fixed ProducerID alone would let a new client's batch 1 be answered
	// with the positions of an old client's batch 1).
	var epoch [8]byte
	rand.Read(epoch[:])
	if cfg.ProducerID == "" {
		cfg.ProducerID = hex.EncodeToString(epoch[:])
	} else {
		cfg.ProducerID += "." + hex.EncodeToString(epoch[:4])
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDialTimeout)
		defer cancel()
	}
	if cfg.Redis == nil {
		if _, err := rdb.ParseURL(cfg.URL); err != nil {
			return nil, invalid("%v", err)
		}
	}
	// rdb.Open dials before it can look at ctx (the driver's dialer has a
	// timeout of its own), so it runs aside and New returns when ctx ends;
	// a connection that opens too late is closed.
	type opened struct {
		db  *rdb.DB
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		db, err := rdb.Open(ctx, rdb.Options{URL: cfg.URL, TLS: cfg.TLS, Namespace: cfg.Namespace, Client: cfg.Redis, SpinWait: cfg.SpinWait})
		ch <- opened{db, err}
	}()
	var db *rdb.DB
	select {
	case o := <-ch:
		db = o.db
		if o.err != nil {
			return nil, o.err
		}
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.db != nil {
				o.db.Close()
			}
		}()
		return nil, fmt.Errorf("herald: connect to Redis: %w", ctx.Err())
	}
	return &Client{cfg: cfg, db: db, log: cfg.Logger, topics: topics{m: map[string]*topic{}}, subs: map[*Subscription]struct{}{},
		pending: newSlots(cfg.MaxPending), publishIdle: make(chan struct{}), tracing: newTracing(&cfg)}, nil
}

// Namespace is the key prefix in use.
func (c *Client) Namespace() string { return c.cfg.Namespace }

// enterPublish counts a publish call in c.publishing, unless the client is
// closing: Shutdown waits for the calls that entered before it, so that it
// sends what they queue. (Atomics, not the client's mutex: every publish
// passes here.)
func (c *Client) enterPublish() error {
	if c.publishing.Add(1)&closingBit != 0 {
		c.leavePublish()
		return ErrClosed
	}
	return nil
}

// leavePublish ends what enterPublish counted; the last call to leave
// after Shutdown began signals publishIdle.
func (c *Client) leavePublish() {
	if c.publishing.Add(-1) == closingBit {
		c.idleOnce.Do(func() { close(c.publishIdle) })
	}
}

func (c *Client) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// Shutdown stops the client gracefully, like http.Server.Shutdown: new
// calls fail with ErrClosed at once, every subscription drains (handlers
// finish the events already read and their acknowledgements are sent),
// publishes already made are sent (PublishAsync events included), and then
// the Redis connection is closed if New opened it. When ctx ends first,
// subscriptions stop as Subscription.Stop does (unhandled events are
// handed back to the group), the connection is closed anyway, and the
// error wraps ctx.Err() and says what was left. Shutdown and Close may be
// called more than once and concurrently; a later call finishes what an
// earlier one left and returns nil when nothing was.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.shutdown(ctx, true)
}

// Close is the quick form of Shutdown: subscriptions stop without draining
// (running handlers' contexts are cancelled; events read but not handled
// are handed back to the group), publishes already made are sent within
// Config.PublishTimeout, and the connection is closed. It returns an error
// (wrapping context.DeadlineExceeded) when work was still left at that
// bound. It is idempotent: a second Close returns nil.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PublishTimeout)
	defer cancel()
	return c.shutdown(ctx, false)
}

// shutdown is Shutdown (drain) and Close. Order: subscriptions first (their
// acks and retries need the connection), then publish calls that entered
// before closing began, then their writers' in-flight batches, then the
// connection.
func (c *Client) shutdown(ctx context.Context, drain bool) error {
	c.mu.Lock()
	c.closed = true
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for {
		v := c.publishing.Load()
		if v&closingBit != 0 {
			break
		}
		if c.publishing.CompareAndSwap(v, v|closingBit) {
			if v == 0 {
				c.idleOnce.Do(func() { close(c.publishIdle) })
			}
			break
		}
	}
	defer c.closeConn()

	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() {
			if drain {
				_ = s.Drain(ctx) // ctx's error: counted below as a subscription not stopped
				return
			}
			s.Stop()
			waitClosed(ctx, s.Done())
		})
	}
	wg.Wait()
	var left []string
	if n := c.subCount(); n > 0 {
		left = append(left, fmt.Sprintf("%d subscriptions not stopped", n))
	}
	if !waitClosed(ctx, c.publishIdle) {
		left = append(left, fmt.Sprintf("%d publish calls not handed over", c.publishing.Load()&^closingBit))
	} else {
		writersDone := make(chan struct{})
		go func() { c.writers.Wait(); close(writersDone) }()
		if !waitClosed(ctx, writersDone) {
			left = append(left, "publish batches in flight")
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("herald: close: %s: %w", strings.Join(left, ", "), ctx.Err())
	}
	return nil
}

// waitClosed waits for ch to be closed, until ctx ends; it reports whether
// ch was closed (ch wins when both are ready).
func waitClosed(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

// subCount is how many subscriptions have not finished stopping.
func (c *Client) subCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.subs)
}

// closeConn returns the lanes' transaction connections and closes the Redis
// connection (unless the caller passed it in Config.Redis), once.
func (c *Client) closeConn() {
	c.connOnce.Do(func() {
		c.topics.mu.RLock()
		for _, t := range c.topics.m {
			for _, w := range t.writers {
				w.closeFences()
			}
		}
		c.topics.mu.RUnlock()
		c.db.Close()
	})
}

func (c *Client) addSub(s *Subscription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.subs[s] = struct{}{}
	return nil
}

func (c *Client) removeSub(s *Subscription) {
	c.metrics.fold(s)
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}
