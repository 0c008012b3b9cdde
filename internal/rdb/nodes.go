package rdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// nodes returns a client per node: every node of a cluster (masters and
// replicas), or the one server.
func (db *DB) nodes() map[string]rueidis.Client { return db.c.Nodes() }

// NodeAddrs lists the address (host:port) of every node the client knows:
// every master and replica of a cluster, or the one server. Sorted.
func (db *DB) NodeAddrs() []string {
	ns := db.nodes()
	out := make([]string, 0, len(ns))
	for a := range ns {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// NodeRole is one node's answer to ROLE.
type NodeRole struct {
	Addr    string
	Role    string // "master", "slave" (replica), "sentinel"; "" when the node did not answer
	Latency time.Duration
	Err     error // why the node did not answer
}

// NodeRoles sends ROLE to every node the client knows, one after the
// other, each bounded by timeout, and returns the answers sorted by address.
func (db *DB) NodeRoles(ctx context.Context, timeout time.Duration) []NodeRole {
	var out []NodeRole
	db.eachNode(func(addr string, n rueidis.Client) {
		nr := NodeRole{Addr: addr}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		role, err := n.Do(rctx, n.B().Role().Build()).ToArray()
		nr.Latency = time.Since(start)
		cancel()
		if err != nil {
			nr.Err = err
		} else if len(role) > 0 {
			nr.Role, _ = role[0].ToString()
		}
		out = append(out, nr)
	})
	return out
}

// PickNode returns the address of a node that answers PING, trying the
// known nodes in address order starting at index start (mod their number),
// so that a caller can rotate away from a node it lost. ctx bounds the whole
// search; the error is the last node's.
func (db *DB) PickNode(ctx context.Context, start int) (string, error) {
	addrs := db.NodeAddrs()
	if len(addrs) == 0 {
		return "", errors.New("no Redis node known")
	}
	if start < 0 {
		start = -start
	}
	ns := db.nodes()
	var lastErr error
	for i := range addrs {
		a := addrs[(start+i)%len(addrs)]
		n, ok := ns[a]
		if !ok {
			continue
		}
		if lastErr = n.Do(ctx, n.B().Ping().Build()).Error(); lastErr == nil {
			return a, nil
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no Redis node answered")
	}
	return "", lastErr
}

// eachNode calls f for every node the client knows, in address order.
func (db *DB) eachNode(f func(addr string, n rueidis.Client)) {
	ns := db.nodes()
	for _, a := range db.NodeAddrs() {
		if n, ok := ns[a]; ok {
			f(a, n)
		}
	}
}

// EachNode sends the command args to every node the client knows, in
// address order, and returns each node's reply as Do does, keyed by address.
// The first node error stops it. For admin fan-out (CONFIG, INFO, SCAN...).
func (db *DB) EachNode(ctx context.Context, args ...string) (map[string]any, error) {
	if len(args) == 0 {
		return nil, errors.New("no command")
	}
	out := map[string]any{}
	var first error
	db.eachNode(func(addr string, n rueidis.Client) {
		if first != nil {
			return
		}
		v, err := convert(n.Do(ctx, n.B().Arbitrary(args...).Build()))
		if err != nil {
			first = fmt.Errorf("node %s: %w", addr, err)
			return
		}
		out[addr] = v
	})
	return out, first
}

// Do sends one raw command (for tests and tools; Herald's own commands have
// methods) and returns its reply as plain Go values: string (simple, bulk
// and verbatim strings), int64, float64, bool, nil, []any or map[string]any.
// A Redis error reply comes back as the error. On a cluster, Do routes by
// the first key as rueidis does for arbitrary commands.
func (db *DB) Do(ctx context.Context, args ...string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("no command")
	}
	return convert(db.c.Do(ctx, db.c.B().Arbitrary(args...).Build()))
}

// Command sends one command to the Redis (or Sentinel) at addr over a
// connection of its own, closed before it returns, and returns the reply as
// Do does. It is for process management (PING, INFO, CLUSTER MEET,
// SHUTDOWN...) of nodes that need not belong to any client; ctx bounds it.
func Command(ctx context.Context, addr string, args ...string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("no command")
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
		if timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		ForceSingleClient: true,
		DisableCache:      true,
		DisableRetry:      true,
		ClientSetInfo:     rueidis.DisableClientSetInfo,
		Dialer:            net.Dialer{Timeout: timeout},
		ConnWriteTimeout:  timeout,
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return convert(c.Do(ctx, c.B().Arbitrary(args...).Build()))
}

// CommandText is Command for replies read as text: a string as is, a number
// in decimal, an array as its elements' text one per line, nil as "".
func CommandText(ctx context.Context, addr string, args ...string) (string, error) {
	v, err := Command(ctx, addr, args...)
	if err != nil {
		return "", err
	}
	return Text(v), nil
}

// Text renders a reply of Do or Command as text: a string as is, a number
// in decimal, an array as its elements' text one per line, nil as "".
func Text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = Text(e)
		}
		return strings.Join(parts, "\n")
	default:
		return fmt.Sprint(x)
	}
}

func convert(r rueidis.RedisResult) (any, error) {
	m, err := r.ToMessage()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			return nil, nil
		}
		return nil, err
	}
	return convertMsg(m)
}

func convertMsg(m rueidis.RedisMessage) (any, error) {
	if m.IsNil() {
		return nil, nil
	}
	if m.IsArray() {
		arr, _ := m.ToArray()
		out := make([]any, len(arr))
		for i, e := range arr {
			v, err := convertMsg(e)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	if m.IsMap() {
		mm, _ := m.AsMap()
		out := make(map[string]any, len(mm))
		for k, e := range mm {
			v, err := convertMsg(e)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	}
	if m.IsInt64() {
		return m.AsInt64()
	}
	if m.IsFloat64() {
		return m.AsFloat64()
	}
	if m.IsBool() {
		return m.AsBool()
	}
	s, err := m.ToString()
	if err != nil {
		return nil, err
	}
	return strings.TrimPrefix(s, "txt:"), nil // RESP3 verbatim strings keep their format
}
