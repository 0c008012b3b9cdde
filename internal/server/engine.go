package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

	proc    *redisproc.Server
	adopted int // pid of a managed redis-server left running by an earlier herald serve
	dir     string
	lock    *os.File
	mini    *miniredis.Miniredis
}

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
	e := &engine{kind: EngineManaged, log: log, dir: dir, lock: lock}
	// A redis-server left by a herald serve that was killed still owns the
	// directory's AOF: adopt it rather than start a second one on the same files.
	if st, ok := readState(dir); ok && isRedisServer(st.Pid) && redisproc.Ping("127.0.0.1:"+strconv.Itoa(st.Port), time.Second) == nil {
		e.adopted, e.url = st.Pid, "redis://127.0.0.1:"+strconv.Itoa(st.Port)
		log.Warn("adopted the managed redis-server left running by an earlier herald serve", "pid", st.Pid, "port", st.Port, "dir", dir)
		return e, nil
	}
	proc, err := redisproc.Start(ctx, redisproc.Options{Port: cfg.ManagedPort, Dir: dir, AppendOnly: true})
	if err != nil {
		e.unlock()
		return nil, fmt.Errorf("start the managed redis-server in %s: %w", dir, err)
	}
	e.proc, e.url = proc, proc.URL()
	b, _ := json.Marshal(managedState{Pid: proc.Pid(), Port: proc.Port})
	if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o600); err != nil {
		log.Warn("could not record the managed redis-server's pid", "err", err)
	}
	log.Info("managed redis-server started", "pid", proc.Pid(), "addr", proc.Addr(), "dir", dir, "persistence", "AOF, fsync every second")
	return e, nil
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
	if e.proc != nil {
		return e.proc.Pid()
	}
	return e.adopted
}

// ready reports an engine that is gone.
func (e *engine) ready(ctx context.Context) error {
	if e.kind == EngineManaged && e.Pid() == 0 {
		return errors.New("the managed redis-server has exited; see redis.log in the data directory")
	}
	return nil
}

// stop stops what the engine started: the managed child by its pid (a
// clean SIGTERM shutdown that flushes the AOF), or the in-process engine.
func (e *engine) stop() error {
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
		syscall.Flock(int(e.lock.Fd()), syscall.LOCK_UN)
		e.lock.Close()
		e.lock = nil
	}
}
