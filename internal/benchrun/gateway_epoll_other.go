//go:build !linux

package benchrun

import (
	"context"
	"errors"
	"net"
)

// epollPool exists on Linux only; elsewhere each stream has a goroutine.
type epollPool struct{}

func newEpollPool(int) (*epollPool, error) { return nil, errors.New("epoll: Linux only") }

func (p *epollPool) add(net.Conn, *sseBenchClient) error { return errors.New("epoll: Linux only") }
func (p *epollPool) run(context.Context)                 {}
func (p *epollPool) close()                              {}
