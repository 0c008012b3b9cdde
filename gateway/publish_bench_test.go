package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// The publish endpoint on loopback (keep-alive connections, 16 concurrent
// clients) beside direct library publishing of the same events. Run:
//
//	go test -run X -bench Publish -benchtime 3s ./gateway/
//
// events/s is the throughput; ns/op is per request (per library call).

const benchClients = 8 // per GOMAXPROCS: RunParallel's parallelism

func benchClient(b *testing.B) *herald.Client {
	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(b), Namespace: redistest.Namespace(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func payload(n int) []byte {
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, `{"data":{"order":12345,"total":42.5,"currency":"EUR","customer":"c-000123456"},"type":"order.created"}`)
	}
	if n == 1 {
		return []byte(parts[0])
	}
	return []byte("[" + strings.Join(parts, ",") + "]")
}

func BenchmarkPublishHTTP(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			c := benchClient(b)
			g, err := gateway.New(gateway.Config{Client: c})
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(g)
			defer srv.Close()
			defer g.Close()
			tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			body := payload(n)
			url := srv.URL + "/v1/topics/bench/events"
			b.SetParallelism(benchClients)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "events/s")
		})
	}
}

func BenchmarkPublishLibrary(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			c := benchClient(b)
			evs := make([]herald.Event, n)
			for i := range evs {
				evs[i] = herald.Event{Type: "order.created", ContentType: "application/json",
					Data: []byte(`{"order":12345,"total":42.5,"currency":"EUR","customer":"c-000123456"}`)}
			}
			ctx := context.Background()
			b.SetParallelism(benchClients)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.PublishBatch(ctx, "bench", evs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "events/s")
		})
	}
}
