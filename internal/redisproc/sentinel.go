package redisproc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// SentinelOptions configure StartSentinel.
type SentinelOptions struct {
	Master     string // the monitored master's name, e.g. "mymaster"
	MasterAddr string // its host:port
	Quorum     int    // default 1
	// DownAfterMS is down-after-milliseconds (default 1000);
	// FailoverTimeoutMS is failover-timeout (default 5000).
	DownAfterMS, FailoverTimeoutMS int
}

// StartSentinel starts a Redis Sentinel (redis-server --sentinel) on a free
// loopback port monitoring one master. Stop it like any Server.
func StartSentinel(ctx context.Context, o SentinelOptions) (*Server, error) {
	if o.Quorum == 0 {
		o.Quorum = 1
	}
	if o.DownAfterMS == 0 {
		o.DownAfterMS = 1000
	}
	if o.FailoverTimeoutMS == 0 {
		o.FailoverTimeoutMS = 5000
	}
	host, port, err := splitAddr(o.MasterAddr)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herald-sentinel-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %s %s %d %d\nsentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s %d\n",
		o.Master, host, port, o.Quorum, o.Master, o.DownAfterMS, o.Master, o.FailoverTimeoutMS)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	s, err := Start(ctx, Options{Dir: dir, sentinelConf: conf})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.tempDir = true // Stop removes the directory this function made
	return s, nil
}

func splitAddr(addr string) (string, int, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			p, err := strconv.Atoi(addr[i+1:])
			if err != nil {
				break
			}
			return addr[:i], p, nil
		}
	}
	return "", 0, fmt.Errorf("redisproc: address %q is not host:port", addr)
}
