package benchrun

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
)

// RunChannel measures live channels (Redis Pub/Sub) with one subscriber,
// in two phases of cfg.Duration per side:
//
//   - "channel": throughput, cfg.Publishers goroutines publishing as fast as
//     they can; counted is what the subscriber received, timed until the
//     last message arrived;
//   - "channel-latency": publish-to-receive latency at cfg.Rate messages
//     per second.
//
// Herald uses Broadcast and a Listener; raw uses PUBLISH and a dedicated
// SUBSCRIBE connection of the same client library.
func RunChannel(ctx context.Context, cfg Config) (res Result, err error) {
	b, res, err := open(ctx, "channel", cfg)
	if err != nil {
		return res, err
	}
	defer b.close()
	var sides [4]Side
	for i, f := range []func(context.Context, bool) (Side, error){b.heraldChannel, b.rawChannel, b.heraldChannel, b.rawChannel} {
		if sides[i], err = f(ctx, i >= 2); err != nil {
			return res, err
		}
	}
	hd, rd := fmt.Sprintf("Broadcast from %d goroutines, one Listener", cfg.Publishers),
		fmt.Sprintf("PUBLISH from %d goroutines, one SUBSCRIBE connection", cfg.Publishers)
	res.Phases = []Phase{
		{Name: "channel", Herald: sides[0], Raw: sides[1], HeraldDoes: hd, RawDoes: rd},
		{Name: "channel-latency", Herald: sides[2], Raw: sides[3], HeraldDoes: hd, RawDoes: rd, Rate: cfg.Rate},
	}
	return res, nil
}

// channelPhase publishes with publish and counts what receive saw: flat out
// for cfg.Duration, or paced when latency is set.
func (b *bench) channelPhase(ctx context.Context, latency bool, s *samples, publish func(ctx context.Context, data []byte) error) (Side, error) {
	m := b.meter(ctx)
	if latency {
		sent, err := paced(ctx, b.cfg.Rate, b.cfg.Publishers, b.cfg.Size, b.cfg.Duration, publish)
		if err != nil {
			return Side{}, err
		}
		return b.latencySide(ctx, m, s, sent), nil
	}
	var sent atomic.Int64
	deadline := m.start.Add(b.cfg.Duration)
	err := forEach(ctx, b.cfg.Publishers, func(ctx context.Context, _ int) error {
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if err := publish(ctx, b.payload); err != nil {
				return err
			}
			sent.Add(1)
		}
		return nil
	})
	if err != nil {
		return Side{}, err
	}
	if err := ctx.Err(); err != nil {
		return Side{}, err
	}
	last := waitCount(ctx, sent.Load(), receiveStall, s.count)
	got := s.count()
	side := m.stop(ctx, last, got)
	side.Sent, side.Lost = sent.Load(), max(0, sent.Load()-got)
	return side, nil
}

func (b *bench) heraldChannel(ctx context.Context, latency bool) (Side, error) {
	ch := b.db.Keys.RawChannel(b.id + "-herald")
	l, err := b.c.Listen(ctx, herald.ListenConfig{Channels: []string{ch}})
	if err != nil {
		return Side{}, fmt.Errorf("herald Listen: %w", err)
	}
	defer l.Close()
	s := b.channelSamples(latency)
	go func() {
		for msg := range l.Messages() {
			if msg.Kind == "message" {
				s.receive(latency, msg.Data)
			}
		}
	}()
	side, err := b.channelPhase(ctx, latency, s, func(ctx context.Context, data []byte) error {
		_, err := b.c.Broadcast(ctx, ch, data)
		return err
	})
	if err != nil {
		return Side{}, fmt.Errorf("herald Broadcast: %w", err)
	}
	return side, nil
}

func (b *bench) rawChannel(ctx context.Context, latency bool) (Side, error) {
	ch := b.db.Keys.RawChannel(b.id + "-raw")
	s := b.channelSamples(latency)
	stop, err := b.db.RawSubscribe(ctx, ch, func(data []byte) { s.receive(latency, data) })
	if err != nil {
		return Side{}, fmt.Errorf("raw SUBSCRIBE: %w", err)
	}
	defer stop()
	side, err := b.channelPhase(ctx, latency, s, func(ctx context.Context, data []byte) error {
		_, err := b.db.RawPublish(ctx, ch, data)
		return err
	})
	if err != nil {
		return Side{}, fmt.Errorf("raw PUBLISH: %w", err)
	}
	return side, nil
}

// channelSamples sizes the sample store: latency phases keep every sample,
// throughput phases only count.
func (b *bench) channelSamples(latency bool) *samples {
	if latency {
		return newSamples(b.expected())
	}
	return newSamples(0)
}

// receive records one message: its latency, or only the count.
func (s *samples) receive(latency bool, data []byte) {
	if !latency {
		s.n.Add(1)
		return
	}
	if d, ok := since(data); ok {
		s.add(d)
	}
}
