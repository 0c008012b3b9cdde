package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
)

// redisServer is the redis-server process this program started (through
// internal/redisproc, which stops it by the pid it was started with, never
// by name).
type redisServer struct {
	proc    *redisproc.Server
	addr    string
	version string
}

// startRedis launches redis-server on a free loopback port, without
// persistence, and waits until it answers.
func startRedis(ctx context.Context, bin string) (*redisServer, error) {
	p, err := redisproc.Start(ctx, redisproc.Options{Binary: bin})
	if errors.Is(err, redisproc.ErrNotInstalled) {
		return nil, fmt.Errorf("%s not found: install it (apt-get install redis-server) or pass -redis-server PATH", bin)
	}
	if err != nil {
		return nil, err
	}
	s := &redisServer{proc: p, addr: p.Addr()}
	info, err := s.info("server")
	if err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("redis-server on %s: INFO server: %w", s.addr, err)
	}
	s.version = info["redis_version"]
	return s, nil
}

// pid is the process id of the server.
func (s *redisServer) pid() int { return s.proc.Pid() }

// stop ends the process we started (SIGTERM, then SIGKILL if it lingers)
// and removes its data directory.
func (s *redisServer) stop() { _ = s.proc.Stop() }

// info reads an INFO section over a connection of its own.
func (s *redisServer) info(section string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	text, err := rdb.CommandText(ctx, s.addr, "INFO", section)
	if err != nil {
		return nil, err
	}
	return rdb.ParseInfo(text), nil
}

// cpu is the CPU time redis-server has used so far (user + system).
func (s *redisServer) cpu() time.Duration {
	info, err := s.info("cpu")
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		x, _ := strconv.ParseFloat(info[f], 64)
		total += time.Duration(x * float64(time.Second))
	}
	return total
}
