package redisproc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// save writes the state file atomically.
func (c *Cluster) save() error {
	c.mu.Lock()
	b, err := json.MarshalIndent(c, "", "  ")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.Dir, ClusterStateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("redisproc: write cluster state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(c.Dir, ClusterStateFile))
}

// LoadCluster reads the state file of a cluster in dir. A missing file
// gives an error wrapping ErrNoCluster (and os.ErrNotExist).
func LoadCluster(dir string) (*Cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(abs, ClusterStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoCluster, abs)
	}
	if err != nil {
		return nil, err
	}
	c := &Cluster{children: map[int]chan struct{}{}}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("redisproc: %s is not a cluster state file: %v; remove %s if it is stale", filepath.Join(abs, ClusterStateFile), err, abs)
	}
	if len(c.Nodes) == 0 {
		return nil, fmt.Errorf("redisproc: %s lists no nodes; remove %s if it is stale", filepath.Join(abs, ClusterStateFile), abs)
	}
	c.Dir = abs // the directory may have been moved
	return c, nil
}

// ProcessMatches reports whether pid is a live (not zombie) redis-server
// process serving port, judged by /proc/PID/cmdline: redis-server's process
// title "redis-server 127.0.0.1:PORT [cluster]", or its original arguments.
// It is false wherever /proc is missing, so nothing is ever signalled there.
func ProcessMatches(pid, port int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(b, []byte("redis-server")) {
		return false // gone, a zombie (empty cmdline), or some other program
	}
	ps := strconv.Itoa(port)
	for _, tok := range strings.FieldsFunc(string(b), func(r rune) bool { return r == 0 || r == ' ' }) {
		if tok == ps || strings.HasSuffix(tok, ":"+ps) {
			return true
		}
	}
	return false
}
