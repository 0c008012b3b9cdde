// Package redisproc starts and stops redis-server processes on free loopback
// ports: the standalone servers that Herald's tests run against, and later the
// clusters of `herald cluster` and the managed engine of `herald serve`.
//
// A process is only ever stopped by the pid this package recorded when it
// started it, after checking that the pid still belongs to a redis-server.
package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
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
	// Binary is the redis-server executable to run; empty means
	// redis-server on PATH.
	Binary string
	// Password, when set, is required of every client (requirepass). It is
	// written to a 0600 file in Dir that the server includes, never put on
	// the command line.
	Password string

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
	if opts.Binary != "" {
		if _, err := exec.LookPath(opts.Binary); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNotInstalled, opts.Binary, err)
		}
	} else if !Installed() {
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
	if s.opts.Password != "" {
		a = append(a, "--include", filepath.Join(s.Dir, authConf))
	}
	if s.opts.AppendOnly {
		a = append(a, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		a = append(a, "--appendonly", "no")
	}
	return append(a, s.opts.Args...)
}

// authConf is the file in Dir that holds requirepass (Options.Password).
const authConf = "redis-auth.conf"

func (s *Server) launch(ctx context.Context) error {
	if s.opts.Password != "" {
		if err := os.WriteFile(filepath.Join(s.Dir, authConf), []byte("requirepass \""+s.opts.Password+"\"\n"), 0o600); err != nil {
			return fmt.Errorf("redisproc: %w", err)
		}
	}
	bin := s.opts.Binary
	if bin == "" {
		bin = "redis-server"
	}
	cmd := exec.Command(bin, s.args()...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisproc: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // its exit status is not needed: exited says it ended
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
		if err := s.ping(200 * time.Millisecond); err == nil {
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

// ping checks the server answers; with Options.Password, a refusal for
// want of a password (NOAUTH) is an answer too.
func (s *Server) ping(timeout time.Duration) error {
	err := Ping(s.Addr(), timeout)
	if err != nil && s.opts.Password != "" && strings.Contains(err.Error(), "NOAUTH") {
		return nil
	}
	return err
}

// Ping sends PING to the Redis at addr over a connection of its own,
// returning nil when it answers.
func Ping(addr string, timeout time.Duration) error {
	_, err := query(addr, timeout, "PING")
	return err
}

// Command sends one command to the Redis (or Sentinel) at addr over a
// connection of its own (through internal/rdb) and returns the reply as
// text: a string as is, a number in decimal, an array as its elements' text
// one per line. It is meant for process management (PING, SHUTDOWN,
// CLUSTER ...), not data.
func Command(addr string, timeout time.Duration, args ...string) (string, error) {
	v, err := query(addr, timeout, args...)
	if err != nil {
		return "", err
	}
	return rdb.Text(v), nil
}

// query is Command with the reply as rdb.Command returns it (string,
// int64, []any, map[string]any, nil).
func query(addr string, timeout time.Duration, args ...string) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return rdb.Command(ctx, addr, args...)
}
