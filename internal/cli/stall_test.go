package cli_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redistest"
)

// stallProxy stands between herald and the test's redis-server on
// loopback and can stop forwarding, as a redis-server stopped with SIGSTOP
// does: connections are accepted and their bytes read, nothing is answered.
type stallProxy struct {
	ln       net.Listener
	upstream string
	// afterConnect stalls at the first command that is not part of
	// connecting (HELLO, CLUSTER SLOTS, PING, ...), so that herald.New
	// succeeds and the command's first real request hangs.
	afterConnect bool

	mu      sync.Mutex
	stalled bool
	conns   []net.Conn
}

func newStallProxy(t *testing.T, afterConnect bool) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, upstream: strings.TrimPrefix(redistest.URL(t), "redis://"), afterConnect: afterConnect}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *stallProxy) URL() string { return "redis://" + p.ln.Addr().String() }

// stall stops forwarding, for good.
func (p *stallProxy) stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

func (p *stallProxy) isStalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

func (p *stallProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *stallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		if p.isStalled() {
			go func() { _, _ = io.Copy(io.Discard, c) }()
			continue
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.track(u)
		go p.pipe(c, u, true)
		go p.pipe(u, c, false)
	}
}

// pipe copies src to dst until the proxy stalls; then it reads and drops.
func (p *stallProxy) pipe(src, dst net.Conn, fromClient bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if fromClient && p.afterConnect && !connectOnly(buf[:n]) {
			p.stall()
		}
		if p.isStalled() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// connectOnly reports whether every RESP command in b is one a client sends
// while connecting. A chunk that cannot be parsed counts as a real request.
func connectOnly(b []byte) bool {
	r := bufio.NewReader(bytes.NewReader(b))
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return true
		}
		if err != nil || !strings.HasPrefix(line, "*") {
			return false
		}
		n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
		if err != nil || n < 1 {
			return false
		}
		for i := 0; i < n; i++ {
			hdr, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(hdr, "$") {
				return false
			}
			size, err := strconv.Atoi(strings.TrimSpace(hdr[1:]))
			if err != nil {
				return false
			}
			arg := make([]byte, size+2)
			if _, err := io.ReadFull(r, arg); err != nil {
				return false
			}
			if i == 0 {
				switch strings.ToUpper(string(arg[:size])) {
				case "HELLO", "CLUSTER", "PING", "CLIENT", "AUTH", "SELECT":
				default:
					return false
				}
			}
		}
	}
}

// proc is a herald process started by a test, with its output collected.
type proc struct {
	cmd      *exec.Cmd
	out, err *lineReader
	done     chan struct{}
	code     int
}

func startHerald(t *testing.T, stdin io.Reader, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &lineReader{}, err: &lineReader{}, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { p.out.consume(stdout) })
	wg.Go(func() { p.err.consume(stderr) })
	go func() {
		wg.Wait() // the pipes are read to the end before Wait closes them
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by pid; it may have exited already
		<-p.done
	})
	return p
}

// interrupt sends SIGINT (Ctrl-C) and waits up to d for the exit; it
// returns how long the process took.
func (p *proc) interrupt(t *testing.T, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	return p.wait(t, d, start)
}

func (p *proc) wait(t *testing.T, d time.Duration, start time.Time) time.Duration {
	t.Helper()
	select {
	case <-p.done:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("herald %v still runs %s later\nstdout:\n%s\nstderr:\n%s", p.cmd.Args[1:], d, p.out.text(), p.err.text())
	}
	return 0
}
