package watermill_test

import (
	"bufio"
	"errors"
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

// redisServer is a redis-server process this test binary started on a free
// loopback port, with AOF on so that a restart keeps what was stored.
type redisServer struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRedis starts redis-server. It runs the binary by its absolute path:
// DEBUG RESTART re-executes argv[0], which must not be a bare name.
func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herald-watermill-redis-")
	if err != nil {
		return nil, err
	}
	var last error
	for range 5 { // a port found free can be taken before the server binds it
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, exited: make(chan struct{})}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
			"--enable-debug-command", "local", "--logfile", filepath.Join(dir, "redis.log"))
		if err := s.cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		go func() { _ = s.cmd.Wait(); close(s.exited) }()
		if last = s.waitReady(10 * time.Second); last == nil {
			return s, nil
		}
		s.stop()
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("redis-server did not start: %w", last)
}

func (s *redisServer) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		_, err := command(s.addr, "PING")
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server exited: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process by its pid (SIGTERM, then SIGKILL) and removes its
// data directory.
func (s *redisServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	os.RemoveAll(s.dir)
}

// command sends one command over a new connection and returns the reply
// of a simple or bulk string; an error reply is an error.
func command(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bad bulk length %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// restartRedis is the suite's RestartServiceCommand, run as this test
// binary with -herald.restart-redis: DEBUG RESTART (a graceful restart of
// the same process: AOF flushed and reloaded), then it waits until the
// server answers with a new run_id.
func restartRedis(addr string) int {
	before, err := runID(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "restart: INFO server:", err)
		return 1
	}
	if _, err := command(addr, "DEBUG", "RESTART"); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "restart: DEBUG RESTART:", err)
		return 1
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if after, err := runID(addr); err == nil {
			if after == before {
				fmt.Fprintln(os.Stderr, "restart: redis-server at", addr, "kept run_id", before, "(DEBUG RESTART did nothing)")
				return 1
			}
			return 0
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "restart: redis-server at", addr, "did not come back within 20s")
	return 1
}

func runID(addr string) (string, error) {
	info, err := command(addr, "INFO", "server")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "run_id:"); ok {
			return v, nil
		}
	}
	return "", errors.New("no run_id in INFO server")
}
