package benchrun

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// sseBenchClient is one SSE client: a raw connection read by its own
// goroutine, or by an epoll loop (epollPool).
type sseBenchClient struct {
	group    int
	conn     net.Conn
	mu       sync.Mutex
	seen     []byte  // deliveries of event n
	lat      []int32 // latencies in µs
	partial  []byte  // an incomplete line (epoll reads)
	received atomic.Int64
}

// consume takes bytes of the stream as read (epoll reads).
func (c *sseBenchClient) consume(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			c.partial = append(c.partial, b...)
			return
		}
		line := b[:i+1]
		if len(c.partial) > 0 {
			c.partial = append(c.partial, line...)
			line = c.partial
		}
		c.line(line)
		c.partial = c.partial[:0]
		b = b[i+1:]
	}
}

// line records one line of the stream: a data line is a delivery.
func (c *sseBenchClient) line(line []byte) {
	if !bytes.HasPrefix(line, []byte("data: ")) {
		return
	}
	n, t, ok := benchFields(line)
	if !ok || n < 0 || n >= len(c.seen) {
		return
	}
	lat := time.Now().UnixNano() - t
	if c.seen[n] < 255 {
		c.seen[n]++
	}
	c.lat = append(c.lat, int32(min(lat/1000, 1<<31-1)))
	c.received.Add(1)
}

func (c *sseBenchClient) run(ctx context.Context, host, path string, pool *epollPool, ready func()) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		ready()
		return err
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, host)
	br := bufio.NewReaderSize(conn, 2048)
	req, _ := http.NewRequest("GET", "http://"+host+path, nil)
	resp, err := http.ReadResponse(br, req)
	ready()
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if pool != nil && len(resp.TransferEncoding) == 0 && resp.ContentLength < 0 {
		// The body runs to the connection's close (a live tail): hand the
		// socket to the epoll loop, with what was read past the headers.
		rest, _ := br.Peek(br.Buffered())
		c.consume(rest)
		return pool.add(conn, c)
	}
	r := bufio.NewReaderSize(resp.Body, 2048)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.line(line)
	}
}

func (c *sseBenchClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
	}
}

// benchFields finds "n":N and "t":T in an event's data line.
func benchFields(line []byte) (n int, t int64, ok bool) {
	num := func(key string) (int64, bool) {
		i := bytes.Index(line, []byte(key))
		if i < 0 {
			return 0, false
		}
		j := i + len(key)
		k := j
		for k < len(line) && line[k] >= '0' && line[k] <= '9' {
			k++
		}
		v, err := strconv.ParseInt(string(line[j:k]), 10, 64)
		return v, err == nil
	}
	nv, ok1 := num(`"n":`)
	tv, ok2 := num(`"t":`)
	return int(nv), tv, ok1 && ok2
}
