package herald

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkConsume fills a backlog of b.N events (1,000 keys, 100 bytes, 8
// partitions) and times one subscription until every event is handled and
// acknowledged: ordered (the default) and Unordered.
//
//	HERALD_CPUPROFILE=/tmp/cpu.out go test -run '^$' -bench BenchmarkConsumeEngine -benchtime 200000x .
//
// HERALD_CPUPROFILE profiles the consumption only (not the fill).
func BenchmarkConsumeEngine(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts []SubscribeOption
	}{{"ordered", nil}, {"unordered", []SubscribeOption{Unordered()}},
		{"ordered-batch128", []SubscribeOption{MaxInFlight(1024), ReadBatch(128)}}} {
		b.Run(mode.name, func(b *testing.B) {
			c := testClient(b, 8)
			ctx := context.Background()
			data := []byte(strconv.Itoa(1e9) + string(make([]byte, 90)))
			const per = 500
			for i := 0; i < b.N; i += per {
				evs := make([]Event, min(per, b.N-i))
				for j := range evs {
					evs[j] = Event{Key: "k" + strconv.Itoa((i+j)%1000), Data: data}
				}
				if _, err := c.PublishBatch(ctx, "t", evs); err != nil {
					b.Fatal(err)
				}
			}
			var handled atomic.Int64
			var first atomic.Int64 // unix ns of the first handled event: the rate excludes the start-up
			if path := os.Getenv("HERALD_CPUPROFILE"); path != "" {
				f, err := os.Create(path + "." + mode.name)
				if err != nil {
					b.Fatal(err)
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					b.Fatal(err)
				}
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
			if path := os.Getenv("HERALD_MEMPROFILE"); path != "" {
				runtime.GC()
				writeAllocs(b, path+"."+mode.name+".base")
				defer writeAllocs(b, path+"."+mode.name)
			}
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0 := processCPU()
			b.ResetTimer()
			start := time.Now()
			sub, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
				if handled.Add(1) == 1 {
					first.Store(time.Now().UnixNano())
				}
				return nil
			}), append(mode.opts, From(StartBeginning))...)
			if err != nil {
				b.Fatal(err)
			}
			var timeline []int64 // handled per 100ms window (HERALD_TIMELINE=1 prints it)
			last, tick := int64(0), time.Now()
			for handled.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
				if time.Since(tick) >= 100*time.Millisecond {
					h := handled.Load()
					timeline, last, tick = append(timeline, h-last), h, time.Now()
				}
			}
			if os.Getenv("HERALD_TIMELINE") != "" {
				b.Logf("handled per 100ms: %v", timeline)
			}
			if err := sub.Drain(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/time.Since(time.Unix(0, first.Load())).Seconds(), "steady-events/s")
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "client-cpu-us/event")
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/event")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "B/event")
		})
	}
}

func writeAllocs(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
