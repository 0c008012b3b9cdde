// Package redisproc starts and stops redis-server processes on free loopback
// ports: the standalone servers that Herald's tests run against, and later the
// clusters of `herald cluster` and the managed engine of `herald serve`.
//
// A process is only ever stopped by the pid this package recorded when it
// started it, after checking that the pid still belongs to a redis-server.
package redisproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned when no redis-server binary is on PATH.
var ErrNotInstalled = errors.New("redisproc: redis-server is not installed (apt-get install -y redis-server)")

// Options configure one redis-server process.
type Options struct {
	// Port to listen on; 0 picks a free loopback port.
	Port int
	// Dir is the data directory; empty makes a temporary one that Stop removes.
	Dir string
	// AppendOnly turns AOF persistence on (appendfsync everysec).
	AppendOnly bool
	// Args are extra redis-server arguments, e.g. "--cluster-enabled", "yes".
	Args []string

	sentinelConf string // set by StartSentinel: run as a Sentinel with this config file
}

// Server is a redis-server process started by this package.
type Server struct {
	Port int
	Dir  string

	cmd     *exec.Cmd
	opts    Options
	tempDir bool
	mu      sync.Mutex
	exited  chan struct{}
}

// Installed reports whether redis-server is on PATH.
func Installed() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start launches redis-server and waits until it answers PING.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if !Installed() {
		return nil, ErrNotInstalled
	}
	s := &Server{opts: opts, Port: opts.Port, Dir: opts.Dir}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "herald-redis-")
		if err != nil {
			return nil, err
		}
		s.Dir, s.tempDir = d, true
	} else if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		if opts.Port == 0 {
			p, err := FreePort()
			if err != nil {
				return nil, err
			}
			s.Port = p
		}
		if lastErr = s.launch(ctx); lastErr == nil {
			return s, nil
		}
		if opts.Port != 0 || ctx.Err() != nil {
			break
		}
	}
	if s.tempDir {
		os.RemoveAll(s.Dir)
	}
	return nil, lastErr
}

func (s *Server) args() []string {
	if s.opts.sentinelConf != "" {
		return []string{s.opts.sentinelConf, "--sentinel", "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
			"--dir", s.Dir, "--logfile", filepath.Join(s.Dir, "redis.log")}
	}
	a := []string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--logfile", filepath.Join(s.Dir, "redis.log"),
		"--repl-diskless-sync-delay", "0",
	}
	if s.opts.AppendOnly {
		a = append(a, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		a = append(a, "--appendonly", "no")
	}
	return append(a, s.opts.Args...)
}

func (s *Server) launch(ctx context.Context) error {
	cmd := exec.Command("redis-server", s.args()...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisproc: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redisproc: redis-server on port %d exited at start: %s", s.Port, s.logTail())
		case <-ctx.Done():
			s.Kill()
			return ctx.Err()
		default:
		}
		if err := Ping(s.Addr(), 200*time.Millisecond); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("redisproc: redis-server on port %d did not answer PING within 10s: %s", s.Port, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Pid is the process id, or 0 when the process is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	select {
	case <-s.exited:
		return 0
	default:
	}
	return s.cmd.Process.Pid
}

// Kill sends SIGKILL to the process this Server started and waits for it to exit.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, 5*time.Second) }

// Stop sends SIGTERM (a clean shutdown), waits, and removes a temporary data directory.
func (s *Server) Stop() error {
	s.signal(syscall.SIGTERM, 10*time.Second)
	s.signal(syscall.SIGKILL, 5*time.Second)
	if s.tempDir {
		return os.RemoveAll(s.Dir)
	}
	return nil
}

// Restart starts the process again with the same port, directory and options.
// Without persistence the data is gone, as after a crash of a cache-only Redis.
func (s *Server) Restart(ctx context.Context) error {
	s.Kill()
	var err error
	for i := 0; i < 50; i++ { // the port can linger briefly after the kill
		if err = s.launch(ctx); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (s *Server) signal(sig syscall.Signal, wait time.Duration) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(wait):
	}
}

// Ping dials addr and sends a RESP PING, returning nil on +PONG.
func Ping(addr string, timeout time.Duration) error {
	_, err := Command(addr, timeout, "PING")
	return err
}

// Command sends one command over a fresh connection and returns the first
// reply line (for simple and error replies) or the bulk string body.
// It is meant for process management (PING, SHUTDOWN, CLUSTER ...), not data.
func Command(addr string, timeout time.Duration, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("redisproc: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}
