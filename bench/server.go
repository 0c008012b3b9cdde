package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// redisServer is the redis-server process this program started. It is
// stopped by the pid it was started with, never by name.
type redisServer struct {
	addr    string
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	version string
}

// startRedis launches redis-server on a free loopback port, without
// persistence, and waits until it answers PING.
func startRedis(ctx context.Context, bin string) (*redisServer, error) {
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("%s not found: install it (apt-get install redis-server) or pass -redis-server PATH", bin)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free loopback port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "herald-peer-bench-")
	if err != nil {
		return nil, err
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches us, and we stop it
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, err := s.info("server", "redis_version"); err == nil {
			s.version = v
			return s, nil
		}
		select {
		case <-s.exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server on %s exited at start; see its log in %s", s.addr, dir)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer within 10s", s.addr)
		}
	}
}

// pid is the process id of the server.
func (s *redisServer) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM to the process we started, then SIGKILL if it lingers,
// and removes its data directory.
func (s *redisServer) stop() {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(sig)
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
			}
		}
	}
	os.RemoveAll(s.dir)
}

// info reads one field of an INFO section over a fresh connection.
func (s *redisServer) info(section, field string) (string, error) {
	c, err := net.DialTimeout("tcp", s.addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n", len(section), section); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(head, "$") {
		return "", fmt.Errorf("INFO answered %q", strings.TrimSpace(head))
	}
	n, _ := strconv.Atoi(strings.TrimSpace(head[1:]))
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(buf), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO %s has no %s", section, field)
}

// cpu is the CPU time redis-server has used so far (user + system).
func (s *redisServer) cpu() time.Duration {
	var total time.Duration
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, err := s.info("cpu", f)
		if err != nil {
			return 0
		}
		x, _ := strconv.ParseFloat(v, 64)
		total += time.Duration(x * float64(time.Second))
	}
	return total
}
