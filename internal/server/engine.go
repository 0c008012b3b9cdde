package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/heraldbus/herald/internal/redisproc"
)

var errEOF = io.EOF

// engine is where Redis comes from: a URL given by the user, a managed
// redis-server child with AOF persistence in the data directory, or an
// in-process miniredis that keeps nothing.
type engine struct {
	kind string // "external", "managed" or "memory"
	url  string
	log  *slog.Logger

	mu       sync.Mutex
	proc     *redisproc.Server
	adopted  int // pid of a managed redis-server left running by an earlier herald serve
	port     int
	password string
	appendOn bool
	dir      string
	lock     *os.File
	mini     *miniredis.Miniredis

	// Supervision of the managed redis-server (supervise).
	down      atomic.Bool   // the child is not running (dead, or restarting)
	fatal     chan error    // receives once when the supervisor gives up
	superStop chan struct{} // closed to stop the supervisor
	superDone chan struct{}
}

// Supervision of the managed redis-server: it is checked every
// superviseTick; a dead one is restarted on the same port and data
// directory after a backoff that doubles from restartBackoff up to
// maxRestartBackoff; maxCrashes deaths within crashWindow make herald serve
// give up and exit.
const (
	superviseTick     = 100 * time.Millisecond
	restartBackoff    = 250 * time.Millisecond
	maxRestartBackoff = 8 * time.Second
	maxCrashes        = 5
	crashWindow       = time.Minute
)

// passwordFile holds the managed redis-server's password (0600) in the data directory.
const passwordFile = "redis-password"

// managedState is written to the data directory, so that a herald serve
// that was killed can be followed by one that finds its redis-server.
type managedState struct {
	Pid  int `json:"pid"`
	Port int `json:"port"`
}

const stateFile = "managed-redis.json"

func startEngine(ctx context.Context, cfg Config, log *slog.Logger) (*engine, error) {
	if cfg.Redis != "" {
		return &engine{kind: "external", url: cfg.Redis, log: log}, nil
	}
	kind := cfg.Engine
	if kind == EngineAuto {
		kind = EngineManaged
		if !redisproc.Installed() {
			kind = EngineMemory
		}
	}
	if kind == EngineMemory {
		return startMemory(log)
	}
	return startManaged(ctx, cfg, log)
}

// MemoryWarning is logged (and printed) when the in-process engine runs.
const MemoryWarning = "NOTHING SURVIVES A RESTART: herald serve is running on an in-process memory engine (miniredis) " +
	"because redis-server is not installed (or engine: memory was asked for). Install redis-server " +
	"(apt-get install -y redis-server) for the managed engine with AOF persistence, or pass --redis URL."

func startMemory(log *slog.Logger) (*engine, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start the in-process engine: %w", err)
	}
	log.Error(MemoryWarning)
	return &engine{kind: EngineMemory, url: "redis://" + m.Addr(), mini: m, log: log}, nil
}

func startManaged(ctx context.Context, cfg Config, log *slog.Logger) (*engine, error) {
	if !redisproc.Installed() {
		return nil, fmt.Errorf("engine managed needs redis-server on PATH: %w", redisproc.ErrNotInstalled)
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "herald.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("data directory %s is in use by another herald serve; stop it or pass another --data-dir", dir)
	}
	pw, err := managedPassword(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	e := &engine{kind: EngineManaged, log: log, dir: dir, lock: lock, password: pw, appendOn: true}
	// A redis-server left by a herald serve that was killed still owns the
	// directory's AOF: adopt it rather than start a second one on the same files.
	if st, ok := readState(dir); ok && isRedisServer(st.Pid) && authPing(st.Port, pw) == nil {
		e.adopted, e.port = st.Pid, st.Port
		e.url = managedURL(st.Port, pw)
		log.Warn("adopted the managed redis-server left running by an earlier herald serve", "pid", st.Pid, "port", st.Port, "dir", dir)
		e.startSupervisor()
		return e, nil
	}
	proc, err := redisproc.Start(ctx, redisproc.Options{Port: cfg.ManagedPort, Dir: dir, AppendOnly: true, Password: pw})
	if err != nil {
		e.unlock()
		return nil, fmt.Errorf("start the managed redis-server in %s: %w", dir, err)
	}
	e.proc, e.port, e.url = proc, proc.Port, managedURL(proc.Port, pw)
	e.writeState()
	log.Info("managed redis-server started", "pid", proc.Pid(), "addr", proc.Addr(), "dir", dir, "persistence", "AOF, fsync every second",
		"auth", "password in "+filepath.Join(dir, passwordFile))
	e.startSupervisor()
	return e, nil
}

// managedURL is the URL of the managed redis-server on port.
func managedURL(port int, password string) string {
	return "redis://:" + password + "@127.0.0.1:" + strconv.Itoa(port)
}

// authPing checks that the redis-server on port answers and requires a
// password; one left by an older herald serve without a password is given
// this one (CONFIG SET requirepass).
func authPing(port int, password string) error {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	err := redisproc.Ping(addr, time.Second)
	if err != nil {
		if strings.Contains(err.Error(), "NOAUTH") {
			return nil
		}
		return err
	}
	_, err = redisproc.Command(addr, time.Second, "CONFIG", "SET", "requirepass", password)
	return err
}

// managedPassword reads the data directory's password file, creating it
// (128 random bits, mode 0600) when there is none.
func managedPassword(dir string) (string, error) {
	path := filepath.Join(dir, passwordFile)
	if b, err := os.ReadFile(path); err == nil {
		if pw := strings.TrimSpace(string(b)); pw != "" {
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(path, 0o600); err != nil {
					return "", err
				}
			}
			return pw, nil
		}
	}
	var r [16]byte
	rand.Read(r[:])
	pw := hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	return pw, nil
}

// ManagedURL is the URL (password included) of the managed redis-server
// that a running herald serve keeps in data directory dir, so that herald
// commands find it; ok is false when none is running there.
func ManagedURL(dir string) (url string, ok bool) {
	st, ok := readState(dir)
	if !ok || !isRedisServer(st.Pid) {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(dir, passwordFile))
	if err != nil {
		return "", false
	}
	return managedURL(st.Port, strings.TrimSpace(string(b))), true
}

func (e *engine) writeState() {
	b, _ := json.Marshal(managedState{Pid: e.Pid(), Port: e.port})
	if err := os.WriteFile(filepath.Join(e.dir, stateFile), b, 0o600); err != nil {
		e.log.Warn("could not record the managed redis-server's pid", "err", err)
	}
}

// alive reports whether the managed redis-server process runs.
func (e *engine) alive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc != nil {
		return e.proc.Pid() != 0
	}
	return e.adopted != 0 && isRedisServer(e.adopted)
}

func (e *engine) startSupervisor() {
	e.fatal = make(chan error, 1)
	e.superStop = make(chan struct{})
	e.superDone = make(chan struct{})
	go e.supervise()
}

// supervise restarts the managed redis-server when it dies (see the
// constants above); it marks the engine down meanwhile, which /healthz
// reports.
func (e *engine) supervise() {
	defer close(e.superDone)
	tick := time.NewTicker(superviseTick)
	defer tick.Stop()
	var crashes []time.Time
	backoff := restartBackoff
	for {
		select {
		case <-e.superStop:
			return
		case <-tick.C:
		}
		if e.alive() {
			if len(crashes) > 0 && time.Since(crashes[len(crashes)-1]) > crashWindow {
				backoff = restartBackoff
			}
			continue
		}
		e.down.Store(true)
		now := time.Now()
		crashes = append(crashes, now)
		for len(crashes) > 0 && now.Sub(crashes[0]) > crashWindow {
			crashes = crashes[1:]
		}
		if len(crashes) >= maxCrashes {
			err := fmt.Errorf("the managed redis-server died %d times within %s; giving up (see %s)",
				len(crashes), crashWindow, filepath.Join(e.dir, "redis.log"))
			e.log.Error("managed redis-server keeps crashing; herald serve exits", "crashes", len(crashes), "dir", e.dir)
			e.fatal <- err
			return
		}
		e.log.Error("managed redis-server died; restarting it on the same data directory", "port", e.port, "dir", e.dir,
			"in", backoff, "crashes_last_minute", len(crashes))
		select {
		case <-e.superStop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxRestartBackoff)
		if err := e.restart(); err != nil {
			e.log.Error("restarting the managed redis-server failed; trying again", "err", err)
			continue // counted as a crash on the next tick
		}
		e.down.Store(false)
		e.writeState()
		e.log.Warn("managed redis-server restarted", "pid", e.Pid(), "port", e.port, "dir", e.dir)
	}
}

// restart starts the managed redis-server again on the same port, data
// directory and password.
func (e *engine) restart() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.mu.Lock()
	proc := e.proc
	e.mu.Unlock()
	if proc != nil {
		return proc.Restart(ctx)
	}
	p, err := redisproc.Start(ctx, redisproc.Options{Port: e.port, Dir: e.dir, AppendOnly: e.appendOn, Password: e.password})
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.proc, e.adopted = p, 0
	e.mu.Unlock()
	return nil
}

// live is /healthz's check: the managed redis-server is running.
func (e *engine) live(ctx context.Context) error {
	if e.kind == EngineManaged && e.down.Load() {
		return errors.New("the managed redis-server is down; herald serve is restarting it (see redis.log in the data directory)")
	}
	return nil
}

func readState(dir string) (managedState, bool) {
	var st managedState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil || json.Unmarshal(b, &st) != nil || st.Pid <= 0 || st.Port <= 0 {
		return st, false
	}
	return st, true
}

// isRedisServer reports whether pid is a running redis-server process.
func isRedisServer(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	name := strings.SplitN(string(b), "\x00", 2)[0]
	return strings.Contains(filepath.Base(name), "redis-server")
}

// Pid is the managed redis-server's pid (0 for other engines).
func (e *engine) Pid() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc != nil {
		return e.proc.Pid()
	}
	return e.adopted
}

// ready reports an engine that is gone.
func (e *engine) ready(ctx context.Context) error {
	if e.kind == EngineManaged && (e.down.Load() || e.Pid() == 0) {
		return errors.New("the managed redis-server is down; see redis.log in the data directory")
	}
	return nil
}

// stop stops what the engine started: the managed child by its pid (a
// clean SIGTERM shutdown that flushes the AOF), or the in-process engine.
func (e *engine) stop() error {
	if e.superStop != nil {
		close(e.superStop)
		<-e.superDone
		e.superStop = nil
	}
	var err error
	switch {
	case e.proc != nil:
		pid := e.proc.Pid()
		err = e.proc.Stop()
		e.log.Info("managed redis-server stopped", "pid", pid, "dir", e.dir)
	case e.adopted != 0:
		if isRedisServer(e.adopted) {
			_ = syscall.Kill(e.adopted, syscall.SIGTERM)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && isRedisServer(e.adopted) {
				time.Sleep(20 * time.Millisecond)
			}
			if isRedisServer(e.adopted) {
				_ = syscall.Kill(e.adopted, syscall.SIGKILL)
			}
		}
	case e.mini != nil:
		e.mini.Close()
	}
	if e.dir != "" {
		os.Remove(filepath.Join(e.dir, stateFile))
	}
	e.unlock()
	return err
}

func (e *engine) unlock() {
	if e.lock != nil {
		_ = syscall.Flock(int(e.lock.Fd()), syscall.LOCK_UN)
		e.lock.Close()
		e.lock = nil
	}
}
