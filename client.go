package herald

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
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

	mu        sync.Mutex
	closed    bool
	subs      map[*Subscription]struct{}
	writers   sync.WaitGroup // flushing partition writers
	inPublish atomic.Int64   // publish calls between enterPublish and their hand-off to writers
	closing   atomic.Bool    // set by Close before it waits for inPublish to reach 0
	pending   chan struct{}  // one slot per unsettled PublishAsync event
	health    health
	stats     clientStats

	// testHookAppended, when set, runs after each append script returns and
	// may turn a success into an error (tests simulate a lost reply with it).
	testHookAppended func() error
}

// New connects to Redis and returns a Client.
func New(cfg Config) (*Client, error) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := rdb.Open(ctx, rdb.Options{URL: cfg.URL, TLS: cfg.TLS, Namespace: cfg.Namespace, Client: cfg.Redis})
	if err != nil {
		if cfg.Redis == nil {
			if _, perr := rdb.ParseURL(cfg.URL); perr != nil {
				return nil, invalid("%v", perr)
			}
		}
		return nil, err
	}
	return &Client{cfg: cfg, db: db, log: cfg.Logger, topics: topics{m: map[string]*topic{}}, subs: map[*Subscription]struct{}{}, pending: make(chan struct{}, cfg.MaxPending)}, nil
}

// Namespace is the key prefix in use.
func (c *Client) Namespace() string { return c.cfg.Namespace }

// enterPublish counts a publish call in c.inPublish, unless the client is
// closed: Close waits for the calls that entered before it, so that it
// sends what they queued. (Atomics, not the client's mutex: every publish
// passes here.)
func (c *Client) enterPublish() error {
	c.inPublish.Add(1)
	if c.closing.Load() {
		c.leavePublish()
		return ErrClosed
	}
	return nil
}

// leavePublish ends what enterPublish counted.
func (c *Client) leavePublish() { c.inPublish.Add(-1) }

func (c *Client) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// Close drains every subscription (in-flight handlers finish and their acks
// are sent, bounded by 30 s), waits for pending publishes, and closes the
// Redis connection if New opened it. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.closing.Store(true)
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Shutdown order: subscriptions first (their acks and retries need the
	// connection), then publishers' in-flight batches, then the connection.
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() { defer wg.Done(); s.Drain(ctx) }()
	}
	wg.Wait()
	for c.inPublish.Load() > 0 { // calls that entered before closing was set
		time.Sleep(time.Millisecond)
	}
	c.writers.Wait()
	c.topics.mu.RLock()
	for _, t := range c.topics.m {
		for _, w := range t.writers {
			w.closeFences()
		}
	}
	c.topics.mu.RUnlock()
	c.db.Close()
	return nil
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
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}
