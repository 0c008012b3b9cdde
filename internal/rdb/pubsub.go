package rdb

import (
	"context"
	"sort"

	"github.com/redis/rueidis"
)

// Publish sends PUBLISH and returns the receivers counted by the node that
// took it (on a cluster the message reaches every node; the count does not).
func (db *DB) Publish(ctx context.Context, channel string, data []byte) (int64, error) {
	return db.C.Do(ctx, db.C.B().Publish().Channel(channel).Message(rueidis.BinaryString(data)).Build()).AsInt64()
}

// NodeClients returns a client per node: every node of a cluster (masters
// and replicas), or the one server.
func (db *DB) NodeClients() map[string]rueidis.Client {
	return db.C.Nodes()
}

// IsCluster reports whether the client talks to a Redis Cluster.
func (db *DB) IsCluster() bool { return db.C.Mode() == rueidis.ClientModeCluster }

// NumSub sums PUBSUB NUMSUB over every node (the counts are node-local).
func (db *DB) NumSub(ctx context.Context, channels []string) (map[string]int64, error) {
	out := make(map[string]int64, len(channels))
	for _, ch := range channels {
		out[ch] = 0
	}
	for _, n := range db.NodeClients() {
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
	for _, n := range db.NodeClients() {
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
	for _, n := range db.NodeClients() {
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

// DialPubSub opens a dedicated subscriber connection on node (any node for
// classic pub/sub: a cluster broadcasts it to every node).
func DialPubSub(node rueidis.Client, h PubSubHandlers) *PubSubConn {
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
	return &PubSubConn{dc: dc, cancel: cancel, Lost: lost}
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

// LastID returns the id of a stream's newest entry, or "0-0" when it has none.
func (db *DB) LastID(ctx context.Context, stream string) (string, error) {
	es, err := db.RevRange(ctx, stream, "+", "-", 1)
	if err != nil || len(es) == 0 {
		return "0-0", err
	}
	return es[0].ID, nil
}

// Tail reads entries after id from one stream without a consumer group
// (XREAD), waiting up to blockMS. It costs publishers nothing.
func (db *DB) Tail(ctx context.Context, stream, after string, count, blockMS int64) ([]Entry, error) {
	return parseXRead(db.C.Do(ctx, db.C.B().Xread().Count(count).Block(blockMS).Streams().Key(stream).Id(after).Build()))
}
