package redisproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Kill sends SIGKILL to the node on port (a crash, for drills) and waits
// until the process is gone. It fails, signalling nothing, when the
// recorded pid is not a redis-server serving that port.
func (c *Cluster) Kill(port int) (pid int, err error) {
	nd, err := c.Node(port)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	pid = nd.Pid
	c.mu.Unlock()
	if !ProcessMatches(pid, port) {
		return pid, fmt.Errorf("redisproc: node %d is not running (recorded pid %d is not a redis-server on that port); nothing killed", port, pid)
	}
	if !c.killPid(pid, port) {
		return pid, fmt.Errorf("redisproc: node %d (pid %d) still runs 5s after SIGKILL", port, pid)
	}
	return pid, nil
}

// killPid SIGKILLs pid if it is a redis-server serving port, and waits up
// to 5 s for it to go. It reports whether the process is gone.
func (c *Cluster) killPid(pid, port int) bool {
	if !ProcessMatches(pid, port) {
		return true
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return c.waitGone(pid, port, 5*time.Second)
}

func (c *Cluster) waitGone(pid, port int, d time.Duration) bool {
	c.mu.Lock()
	exited := c.children[pid]
	c.mu.Unlock()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if exited != nil {
			select {
			case <-exited:
				return true
			default:
			}
		} else if !ProcessMatches(pid, port) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// Restart starts the node on port again with its recorded arguments and
// directory (its nodes.conf keeps its identity, its AOF its data), first
// killing it if it still runs, and records the new pid. It returns once
// the node answers PING; WaitNode waits for it to rejoin.
func (c *Cluster) Restart(ctx context.Context, port int) error {
	nd, err := c.Node(port)
	if err != nil {
		return err
	}
	c.mu.Lock()
	pid := nd.Pid
	c.mu.Unlock()
	if !c.killPid(pid, port) {
		return fmt.Errorf("redisproc: node %d (pid %d) still runs 5s after SIGKILL", port, pid)
	}
	for i := 0; ; i++ { // the port can linger briefly after a kill
		if err = c.launch(ctx, nd); err == nil || i >= 20 || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	return c.save()
}

// Start starts every node that is not running, with its recorded
// arguments, and waits for a healthy cluster: `herald cluster up` on a
// directory whose cluster was stopped brings it back with its data.
func (c *Cluster) Start(ctx context.Context) error {
	if !Installed() {
		return ErrNotInstalled
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, nd := range c.Nodes {
		if c.Running(nd) {
			continue
		}
		if !portFree(nd.Port) {
			return fmt.Errorf("redisproc: port %d of node %d is taken by another process; stop it, or remove %s and start a new cluster", nd.Port, nd.Port, c.Dir)
		}
		wg.Go(func() { errs[i] = c.launch(ctx, nd) })
	}
	wg.Wait()
	if err := c.save(); err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// StoppedNode reports what Stop did to one node.
type StoppedNode struct {
	Port int    `json:"port"`
	Pid  int    `json:"pid"`
	Note string `json:"note"` // "stopped", "killed after SIGTERM timeout", "not running"
}

// Stop ends every running node: SIGTERM (a clean shutdown, AOF flushed) to
// all at once, repeated every 0.5 s while a node still runs, and SIGKILL to
// those still running after 15 s. Only recorded
// pids that are still redis-servers serving their node's port are
// signalled. The state file is kept (pids cleared) so Start can bring the
// cluster back; Purge removes the data.
func (c *Cluster) Stop(ctx context.Context) ([]StoppedNode, error) {
	nodes := c.snapshot()
	out := make([]StoppedNode, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		out[i] = StoppedNode{Port: nd.Port, Pid: nd.Pid, Note: "not running"}
		if !ProcessMatches(nd.Pid, nd.Port) {
			continue
		}
		wg.Go(func() {
			deadline := time.Now().Add(15 * time.Second)
			if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
				deadline = dl
			}
			// Redis drops a SIGTERM that arrives while it writes its first
			// AOF ("Writing initial AOF, can't exit", e.g. right after a
			// replica's full sync): repeat it until the process is gone.
			for time.Now().Before(deadline) {
				if !ProcessMatches(nd.Pid, nd.Port) {
					break
				}
				_ = syscall.Kill(nd.Pid, syscall.SIGTERM)
				if c.waitGone(nd.Pid, nd.Port, min(500*time.Millisecond, max(time.Until(deadline), 0))) {
					out[i].Note = "stopped"
					return
				}
			}
			if !ProcessMatches(nd.Pid, nd.Port) {
				out[i].Note = "stopped"
				return
			}
			if c.killPid(nd.Pid, nd.Port) {
				out[i].Note = "killed after SIGTERM timeout"
				return
			}
			errs[i] = fmt.Errorf("redisproc: node %d (pid %d) survived SIGTERM and SIGKILL", nd.Port, nd.Pid)
		})
	}
	wg.Wait()
	c.mu.Lock()
	for i, nd := range c.Nodes {
		if errs[i] == nil {
			nd.Pid = 0
		}
	}
	c.mu.Unlock()
	if err := c.save(); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// Purge removes the cluster's data: every node directory, the state file,
// and the cluster directory when nothing else is left in it. It refuses
// while a node still runs.
func (c *Cluster) Purge() error {
	for _, nd := range c.Nodes {
		if c.Running(nd) {
			return fmt.Errorf("redisproc: node %d still runs (pid %d); stop the cluster before removing its data", nd.Port, nd.Pid)
		}
	}
	for _, nd := range c.Nodes {
		if filepath.Dir(nd.Dir) != c.Dir { // only directories this package made
			continue
		}
		if err := os.RemoveAll(nd.Dir); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(c.Dir, ClusterStateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(c.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		if entries, _ := os.ReadDir(c.Dir); len(entries) > 0 {
			return nil // other files live there: leave them and the directory
		}
		return err
	}
	return nil
}

// destroy kills what a failed StartCluster started and removes its files.
func (c *Cluster) destroy() {
	for _, nd := range c.snapshot() {
		c.killPid(nd.Pid, nd.Port)
	}
	c.mu.Lock()
	for _, nd := range c.Nodes {
		nd.Pid = 0
	}
	c.mu.Unlock()
	_ = c.Purge() // best effort: the processes are gone either way
}

// Pause sends SIGSTOP to the node on port: it stays connected but answers
// nothing, as a replica that lags (for drills: a replica paused before its
// master is killed is promoted without the writes it missed). Resume
// continues it.
func (c *Cluster) Pause(port int) error { return c.signalNode(port, syscall.SIGSTOP) }

// Resume sends SIGCONT to a node that Pause stopped.
func (c *Cluster) Resume(port int) error { return c.signalNode(port, syscall.SIGCONT) }

func (c *Cluster) signalNode(port int, sig syscall.Signal) error {
	nd, err := c.Node(port)
	if err != nil {
		return err
	}
	c.mu.Lock()
	pid := nd.Pid
	c.mu.Unlock()
	if !ProcessMatches(pid, port) {
		return fmt.Errorf("redisproc: node %d is not running (recorded pid %d); nothing signalled", port, pid)
	}
	return syscall.Kill(pid, sig)
}
