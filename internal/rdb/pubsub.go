package rdb

import (
	"context"
	"fmt"
	"sort"

	"github.com/redis/rueidis"
)

// Publish sends PUBLISH and returns the receivers counted by the node that
// took it (on a cluster the message reaches every node; the count does not).
func (db *DB) Publish(ctx context.Context, channel string, data []byte) (int64, error) {
	return db.c.Do(ctx, db.c.B().Publish().Channel(channel).Message(rueidis.BinaryString(data)).Build()).AsInt64()
}

// IsCluster reports whether the client talks to a Redis Cluster.
func (db *DB) IsCluster() bool { return db.c.Mode() == rueidis.ClientModeCluster }

// NumSub sums PUBSUB NUMSUB over every node (the counts are node-local).
func (db *DB) NumSub(ctx context.Context, channels []string) (map[string]int64, error) {
	out := make(map[string]int64, len(channels))
	for _, ch := range channels {
		out[ch] = 0
	}
	for _, n := range db.nodes() {
		m, err := n.Do(ctx, n.B().PubsubNumsub().Channel(channels...).Build()).AsIntMap()
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			out[k] += v
		}
	}
	return out, nil
}

// Channels lists active channels matching pattern over every node.
func (db *DB) Channels(ctx context.Context, pattern string) ([]string, error) {
	seen := map[string]bool{}
	for _, n := range db.nodes() {
		b := n.B().PubsubChannels()
		var cmd rueidis.Completed
		if pattern != "" {
			cmd = b.Pattern(pattern).Build()
		} else {
			cmd = b.Build()
		}
		chs, err := n.Do(ctx, cmd).AsStrSlice()
		if err != nil {
			return nil, err
		}
		for _, c := range chs {
			seen[c] = true
		}
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// NumPat sums PUBSUB NUMPAT over every node.
func (db *DB) NumPat(ctx context.Context) (int64, error) {
	var total int64
	for _, n := range db.nodes() {
		v, err := n.Do(ctx, n.B().PubsubNumpat().Build()).AsInt64()
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

// PubSubConn is one dedicated connection in subscriber mode.
type PubSubConn struct {
	dc     rueidis.DedicatedClient
	cancel func()
	// Lost receives once when the connection ends (nil error after Close).
	Lost <-chan error
}

// PubSubHandlers receive what a PubSubConn gets.
type PubSubHandlers struct {
	OnMessage      func(channel, pattern string, data []byte)
	OnSubscription func(kind, channel string, count int64)
}

// DialPubSub opens a dedicated subscriber connection on the node at addr
// (any node for classic pub/sub: a cluster broadcasts it to every node);
// PickNode chooses one that answers.
func (db *DB) DialPubSub(addr string, h PubSubHandlers) (*PubSubConn, error) {
	node, ok := db.nodes()[addr]
	if !ok {
		return nil, fmt.Errorf("node %s is not among the client's nodes", addr)
	}
	dc, cancel := node.Dedicate()
	lost := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: func(m rueidis.PubSubMessage) {
			h.OnMessage(m.Channel, m.Pattern, []byte(m.Message))
		},
		OnSubscription: func(s rueidis.PubSubSubscription) {
			if h.OnSubscription != nil {
				h.OnSubscription(s.Kind, s.Channel, s.Count)
			}
		},
	})
	return &PubSubConn{dc: dc, cancel: cancel, Lost: lost}, nil
}

// Subscribe, Unsubscribe, PSubscribe and PUnsubscribe change the connection's subscriptions.
func (p *PubSubConn) Subscribe(ctx context.Context, chs ...string) error {
	return p.dc.Do(ctx, p.dc.B().Subscribe().Channel(chs...).Build()).Error()
}

// Unsubscribe leaves channels.
func (p *PubSubConn) Unsubscribe(ctx context.Context, chs ...string) error {
	return p.dc.Do(ctx, p.dc.B().Unsubscribe().Channel(chs...).Build()).Error()
}

// PSubscribe joins patterns.
func (p *PubSubConn) PSubscribe(ctx context.Context, pats ...string) error {
	return p.dc.Do(ctx, p.dc.B().Psubscribe().Pattern(pats...).Build()).Error()
}

// PUnsubscribe leaves patterns.
func (p *PubSubConn) PUnsubscribe(ctx context.Context, pats ...string) error {
	return p.dc.Do(ctx, p.dc.B().Punsubscribe().Pattern(pats...).Build()).Error()
}

// Close ends the connection.
func (p *PubSubConn) Close() { p.cancel() }
