package benchrun

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
)

// epollPool reads many SSE streams with a few epoll loops (level
// triggered): one read system call per arrival and no goroutine per
// stream, so the benchmark's clients cost the machine little beside the
// server they measure.
type epollPool struct {
	loops []*epollLoop
	mu    sync.Mutex
	next  int
}

type epollLoop struct {
	epfd    int
	mu      sync.Mutex
	clients map[int32]*sseBenchClient
}

func newEpollPool(n int) (*epollPool, error) {
	p := &epollPool{}
	for range n {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			p.close()
			return nil, err
		}
		p.loops = append(p.loops, &epollLoop{epfd: fd, clients: map[int32]*sseBenchClient{}})
	}
	return p, nil
}

// add moves conn's socket to a loop: the loop reads a duplicate of it and
// conn is closed.
func (p *epollPool) add(conn net.Conn, c *sseBenchClient) error {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	f, err := tc.File()
	if err != nil {
		return err
	}
	fd, err := syscall.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return err
	}
	conn.Close()
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return err
	}
	p.mu.Lock()
	l := p.loops[p.next%len(p.loops)]
	p.next++
	p.mu.Unlock()
	l.mu.Lock()
	l.clients[int32(fd)] = c
	l.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	return syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

// run reads until ctx ends.
func (p *epollPool) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, l := range p.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx)
		}()
	}
	wg.Wait()
}

func (l *epollLoop) run(ctx context.Context) {
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		n, err := syscall.EpollWait(l.epfd, events, 100)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		for i := range n {
			fd := events[i].Fd
			l.mu.Lock()
			c := l.clients[fd]
			l.mu.Unlock()
			if c == nil {
				continue
			}
			m, err := syscall.Read(int(fd), buf)
			if m > 0 {
				c.consume(buf[:m])
			}
			if m == 0 || err != nil && !errors.Is(err, syscall.EAGAIN) {
				_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
				syscall.Close(int(fd))
				l.mu.Lock()
				delete(l.clients, fd)
				l.mu.Unlock()
			}
		}
	}
}

// close closes every stream and the loops.
func (p *epollPool) close() {
	for _, l := range p.loops {
		l.mu.Lock()
		for fd := range l.clients {
			syscall.Close(int(fd))
		}
		l.clients = map[int32]*sseBenchClient{}
		l.mu.Unlock()
		syscall.Close(l.epfd)
	}
}
