package herald

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// Live channels are Redis Pub/Sub: fire-and-forget messages for whoever is
// listening now, interoperable with any Redis client (redis-cli SUBSCRIBE
// receives what Broadcast sends, and a Listener receives redis-cli PUBLISH).
// For events that must not be lost, use topics.

// Broadcast publishes data on a channel (PUBLISH) and returns the number of
// receivers counted by the Redis node that took it. On a Redis Cluster the
// message reaches subscribers on every node, but the count is node-local:
// use NumSub for a cluster-wide count of subscribers.
func (c *Client) Broadcast(ctx context.Context, channel string, data []byte) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	if channel == "" {
		return 0, invalid("channel name is empty")
	}
	n, err := c.db.Publish(ctx, channel, data)
	return int(n), err
}

// NumSub returns the number of subscribers of each channel, summed over
// every node of a cluster.
func (c *Client) NumSub(ctx context.Context, channels ...string) (map[string]int64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if len(channels) == 0 {
		return map[string]int64{}, nil
	}
	return c.db.NumSub(ctx, channels)
}

// Channels lists channels with at least one subscriber (not counting
// pattern subscribers) that match pattern ("" for all), over every node.
func (c *Client) Channels(ctx context.Context, pattern string) ([]string, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	return c.db.Channels(ctx, pattern)
}

// NumPat returns the number of pattern subscriptions, summed over every node.
func (c *Client) NumPat(ctx context.Context) (int64, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	return c.db.NumPat(ctx)
}

// ChannelMessage is what a Listener receives: a message, or a confirmation
// of a subscription change (as redis-cli shows them).
type ChannelMessage struct {
	// Kind is "message", "pmessage", "subscribe", "unsubscribe",
	// "psubscribe" or "punsubscribe".
	Kind    string
	Channel string // the channel, or the pattern for psubscribe/punsubscribe
	Pattern string // the matching pattern of a pmessage
	Data    []byte
	Count   int64 // subscriptions of the connection, for confirmations
}

// Gap is a period when a Listener was not connected: messages published
// then are gone (Pub/Sub keeps nothing).
type Gap struct {
	Start, End time.Time
	Err        error // what ended the connection
}

// ListenConfig configures Listen.
type ListenConfig struct {
	Channels []string
	Patterns []string
	// Buffer is the capacity of the Messages channel (default 1024). A full
	// buffer holds the connection back until the reader catches up.
	Buffer int
	// OnGap is called after a reconnect with the gap that it closed.
	OnGap func(Gap)
}

// Listener receives live channel messages. It reconnects and resubscribes
// by itself after a connection loss, a Redis restart or a failover.
type Listener struct {
	c   *Client
	cfg ListenConfig

	mu       sync.Mutex
	channels map[string]bool
	patterns map[string]bool
	conn     *rdb.PubSubConn

	msgs    chan ChannelMessage
	ctx     context.Context
	cancel  context.CancelFunc
	sendMu  sync.RWMutex
	closed  bool
	done    chan struct{}
	ready   chan struct{} // closed after the first subscription
	gaps    atomic.Int64
	tries   atomic.Int64 // failed connection attempts (pickNode rotates by them)
	recv    atomic.Int64
	lastErr atomic.Pointer[error]
}

// Listen subscribes to channels and patterns and returns a Listener. It
// returns once the first subscription is confirmed, or with an error when
// Redis cannot be reached before ctx ends.
func (c *Client) Listen(ctx context.Context, cfg ListenConfig) (*Listener, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1024
	}
	for _, ch := range append(append([]string{}, cfg.Channels...), cfg.Patterns...) {
		if ch == "" {
			return nil, invalid("empty channel or pattern name")
		}
	}
	l := &Listener{c: c, cfg: cfg, channels: map[string]bool{}, patterns: map[string]bool{},
		msgs: make(chan ChannelMessage, cfg.Buffer), done: make(chan struct{}), ready: make(chan struct{})}
	for _, ch := range cfg.Channels {
		l.channels[ch] = true
	}
	for _, p := range cfg.Patterns {
		l.patterns[p] = true
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	select {
	case <-l.ready:
		return l, nil
	case <-ctx.Done():
		l.Close()
		if p := l.lastErr.Load(); p != nil {
			return nil, fmt.Errorf("herald: listen: %w", *p)
		}
		return nil, ctx.Err()
	}
}

// Messages delivers messages and subscription confirmations. It is closed
// when the Listener is closed.
func (l *Listener) Messages() <-chan ChannelMessage { return l.msgs }

// Done is closed when the Listener has stopped.
func (l *Listener) Done() <-chan struct{} { return l.done }

// Gaps is the number of reconnects (each a gap in which messages were missed).
func (l *Listener) Gaps() int64 { return l.gaps.Load() }

// Received is the number of messages received.
func (l *Listener) Received() int64 { return l.recv.Load() }

// Close unsubscribes and stops the Listener. It is idempotent, and may be
// called from OnGap.
func (l *Listener) Close() error {
	l.cancel()
	<-l.done
	return nil
}

// Subscribe adds channels. It waits for Redis's confirmation, which comes
// behind the messages already on the connection: when Messages is full and
// the goroutine that reads it is the one calling Subscribe, only ctx ends
// the wait, so call it from another goroutine or with a ctx that ends.
// Without a connection (while the Listener reconnects) it records the
// change, which the new connection gets before it delivers anything.
func (l *Listener) Subscribe(ctx context.Context, channels ...string) error {
	return l.change(ctx, channels, l.channels, true, (*rdb.PubSubConn).Subscribe)
}

// Unsubscribe removes channels.
func (l *Listener) Unsubscribe(ctx context.Context, channels ...string) error {
	return l.change(ctx, channels, l.channels, false, (*rdb.PubSubConn).Unsubscribe)
}

// PSubscribe adds patterns (glob-style: * ? [...]).
func (l *Listener) PSubscribe(ctx context.Context, patterns ...string) error {
	return l.change(ctx, patterns, l.patterns, true, (*rdb.PubSubConn).PSubscribe)
}

// PUnsubscribe removes patterns.
func (l *Listener) PUnsubscribe(ctx context.Context, patterns ...string) error {
	return l.change(ctx, patterns, l.patterns, false, (*rdb.PubSubConn).PUnsubscribe)
}

func (l *Listener) change(ctx context.Context, names []string, set map[string]bool, add bool,
	op func(*rdb.PubSubConn, context.Context, ...string) error) error {
	if len(names) == 0 {
		return nil
	}
	for _, n := range names {
		if n == "" {
			return invalid("empty channel or pattern name")
		}
	}
	l.mu.Lock()
	for _, n := range names {
		if add {
			set[n] = true
		} else {
			delete(set, n)
		}
	}
	conn := l.conn
	l.mu.Unlock()
	if conn == nil {
		return nil // applied when the connection is back
	}
	err := op(conn, ctx, names...)
	if err != nil && ctx.Err() == nil && rdb.Transient(err) {
		// The connection is being lost: the Listener reconnects and
		// subscribes the new connection to the sets, this change included.
		return nil
	}
	return err
}

func (l *Listener) send(m ChannelMessage) {
	l.sendMu.RLock()
	defer l.sendMu.RUnlock()
	if l.closed {
		return
	}
	select {
	case l.msgs <- m:
	case <-l.ctx.Done():
	}
}

func (l *Listener) run() {
	defer func() {
		l.sendMu.Lock()
		l.closed = true
		close(l.msgs)
		l.sendMu.Unlock()
		close(l.done)
	}()
	b := newBackoff()
	var gapStart time.Time
	var gapErr error
	first := true
	for l.ctx.Err() == nil {
		node, err := l.pickNode()
		if err != nil {
			l.lastErr.Store(&err)
			b.wait(l.ctx)
			continue
		}
		conn, err := l.c.db.DialPubSub(node, rdb.PubSubHandlers{
			OnMessage: func(ch, pat string, data []byte) {
				l.recv.Add(1)
				kind := "message"
				if pat != "" {
					kind = "pmessage"
				}
				l.send(ChannelMessage{Kind: kind, Channel: ch, Pattern: pat, Data: data})
			},
			OnSubscription: func(kind, ch string, n int64) {
				l.send(ChannelMessage{Kind: kind, Channel: ch, Count: n})
			},
		})
		if err != nil {
			l.lastErr.Store(&err)
			l.tries.Add(1)
			b.wait(l.ctx)
			continue
		}
		if err := l.subscribeAll(conn); err != nil {
			conn.Close()
			l.lastErr.Store(&err)
			l.tries.Add(1)
			if gapStart.IsZero() && !first {
				gapStart = time.Now()
			}
			b.wait(l.ctx)
			continue
		}
		b.reset()
		if first {
			first = false
			close(l.ready)
		} else if !gapStart.IsZero() {
			g := Gap{Start: gapStart, End: time.Now(), Err: gapErr}
			l.gaps.Add(1)
			l.c.log.Warn("listener reconnected; messages published during the gap are lost", "gap", g.End.Sub(g.Start), "err", g.Err)
			if l.cfg.OnGap != nil {
				// On a goroutine of its own, so that OnGap may call Close
				// (which waits for this one to end); the next reconnect
				// waits for it, unless the Listener is closing.
				ran := make(chan struct{})
				go func() {
					defer close(ran)
					l.cfg.OnGap(g)
				}()
				select {
				case <-ran:
				case <-l.ctx.Done():
				}
			}
			gapStart = time.Time{}
		}
		select {
		case err := <-conn.Lost:
			gapStart, gapErr = time.Now(), err
			l.lastErr.Store(&err)
		case <-l.ctx.Done():
		}
		l.mu.Lock()
		l.conn = nil
		l.mu.Unlock()
		conn.Close()
	}
}

// subscribeAll subscribes conn to the Listener's channels and patterns and
// then makes conn the Listener's connection. Subscribe and Unsubscribe
// calls made meanwhile changed only the sets (the Listener had no
// connection): what they changed is applied to conn before it is installed,
// until the sets and conn agree.
func (l *Listener) subscribeAll(conn *rdb.PubSubConn) error {
	ctx, cancel := context.WithTimeout(l.ctx, 5*time.Second)
	defer cancel()
	done := [2]map[string]bool{{}, {}} // channels and patterns conn is subscribed to
	for {
		l.mu.Lock()
		var add, drop [2][]string
		for i, set := range [2]map[string]bool{l.channels, l.patterns} {
			for n := range set {
				if !done[i][n] {
					add[i] = append(add[i], n)
				}
			}
			for n := range done[i] {
				if !set[n] {
					drop[i] = append(drop[i], n)
				}
			}
		}
		if len(add[0])+len(add[1])+len(drop[0])+len(drop[1]) == 0 {
			l.conn = conn
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		for i, op := range [2][2]func(*rdb.PubSubConn, context.Context, ...string) error{
			{(*rdb.PubSubConn).Subscribe, (*rdb.PubSubConn).Unsubscribe},
			{(*rdb.PubSubConn).PSubscribe, (*rdb.PubSubConn).PUnsubscribe},
		} {
			if len(add[i]) > 0 {
				sort.Strings(add[i])
				if err := op[0](conn, ctx, add[i]...); err != nil {
					return err
				}
				for _, n := range add[i] {
					done[i][n] = true
				}
			}
			if len(drop[i]) > 0 {
				if err := op[1](conn, ctx, drop[i]...); err != nil {
					return err
				}
				for _, n := range drop[i] {
					delete(done[i], n)
				}
			}
		}
	}
}

// pickNode chooses the node to subscribe on: any reachable node works for
// classic pub/sub, which a cluster broadcasts to every node. It rotates
// after each loss and after each failed attempt, so that a node that does
// not answer at all cannot hold every retry.
func (l *Listener) pickNode() (string, error) {
	ctx, cancel := context.WithTimeout(l.ctx, 2*time.Second)
	defer cancel()
	addr, err := l.c.db.PickNode(ctx, int(l.gaps.Load()+l.tries.Load()))
	if err != nil {
		return "", fmt.Errorf("herald: no Redis node answered: %w", err)
	}
	return addr, nil
}
