package rdb

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"
)

// MonitorLine is one line of Redis MONITOR output from one node.
type MonitorLine struct {
	Node string
	Line string
}

// Monitor runs MONITOR on every node (on a cluster: masters and replicas)
// over raw connections and merges the lines into out until ctx ends. MONITOR
// is a connection mode that client libraries do not offer, so it speaks RESP
// itself. It returns when every node's connection has ended.
func (db *DB) Monitor(ctx context.Context, out chan<- MonitorLine) error {
	addrs := make([]string, 0)
	for a := range db.nodes() {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	errs := make(chan error, len(addrs))
	for _, a := range addrs {
		go func() { errs <- db.monitorNode(ctx, a, out) }()
	}
	var first error
	for range addrs {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil {
			first = err
		}
	}
	return first
}

func (db *DB) monitorNode(ctx context.Context, addr string, out chan<- MonitorLine) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("monitor %s: %w", addr, err)
	}
	if db.opt.TLSConfig != nil {
		cfg := db.opt.TLSConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		conn = tls.Client(conn, cfg)
	}
	go func() { <-ctx.Done(); conn.Close() }()
	defer conn.Close()
	r := bufio.NewReader(conn)
	send := func(args ...string) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if err == nil && strings.HasPrefix(line, "-") {
			err = fmt.Errorf("%s", line[1:])
		}
		return line, err
	}
	if db.opt.Password != "" {
		args := []string{"AUTH", db.opt.Password}
		if db.opt.Username != "" {
			args = []string{"AUTH", db.opt.Username, db.opt.Password}
		}
		if _, err := send(args...); err != nil {
			return fmt.Errorf("monitor %s: auth: %w", addr, err)
		}
	}
	if _, err := send("MONITOR"); err != nil {
		return fmt.Errorf("monitor %s: %w", addr, err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("monitor %s: %w", addr, err)
		}
		line = strings.TrimRight(line, "\r\n")
		line = strings.TrimPrefix(line, "+")
		select {
		case out <- MonitorLine{Node: addr, Line: line}:
		case <-ctx.Done():
			return nil
		}
	}
}
