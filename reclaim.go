package herald

import (
	"context"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// janitor runs beside the readers of an unordered subscription: it keeps
// the entries of running handlers alive, reclaims entries of consumers that
// went silent for longer than the visibility timeout, keeps the consumer in
// the group's set of live unordered consumers (so that an ordered
// subscription refuses to join the group) and forgets idle consumers.
// (Ordered subscriptions have the owner loop instead; entries left pending
// on an owned partition by a former owner's late read are claimed by the
// partition's reader, in stream order: pstate.withStrays.)
func (e *engine) janitor() {
	defer e.side.Done()
	tick := e.o.visibility / 3
	t := time.NewTicker(tick)
	defer t.Stop()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := e.c.db.HeartbeatUnordered(ctx, e.t.parts[0], e.group, e.o.consumer, 0); err != nil {
			e.noteErr("leave group", err)
		}
	}()
	lastForget := time.Now()
	for {
		select {
		case <-e.fetchCtx.Done():
			return
		case <-t.C:
		}
		if _, err := e.c.db.HeartbeatUnordered(e.fetchCtx, e.t.parts[0], e.group, e.o.consumer, e.o.visibility.Milliseconds()); err != nil && e.fetchCtx.Err() == nil {
			e.noteErr("heartbeat", err)
		}
		e.keepAlive(tick)
		e.reclaim()
		if time.Since(lastForget) >= forgetEvery {
			e.forgetIdleConsumers()
			lastForget = time.Now()
		}
	}
}

func (e *engine) liveRuns() []*pstate {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*pstate, 0, len(e.parts))
	for _, p := range e.parts {
		if p != nil && !p.closed.Load() && p.ctx.Err() == nil {
			out = append(out, p)
		}
	}
	return out
}

// keepAlive resets the idle time of entries whose handlers still run.
func (e *engine) keepAlive(age time.Duration) {
	now := time.Now()
	for _, p := range e.liveRuns() {
		var main, retry []string
		p.mu.Lock()
		for b := range p.out {
			if now.Sub(time.Unix(0, max(b.touched.Load(), b.read.UnixNano()))) < age {
				continue
			}
			b.touched.Store(now.UnixNano())
			for i := range b.items {
				d := &b.items[i]
				if st := d.state.Load(); st != stPending && st != stDeferred {
					continue
				}
				if d.retry {
					retry = append(retry, d.id)
				} else {
					main = append(main, d.id)
				}
			}
		}
		p.mu.Unlock()
		for _, s := range []struct {
			stream string
			ids    []string
		}{{p.pk.Stream, main}, {p.pk.Retry(e.group), retry}} {
			if len(s.ids) == 0 {
				continue
			}
			if err := e.c.db.Touch(e.fetchCtx, s.stream, e.group, e.o.consumer, s.ids); err != nil && e.fetchCtx.Err() == nil {
				e.noteErr("keep-alive", err)
			}
		}
	}
}

// reclaim takes over entries idle for longer than the visibility timeout.
func (e *engine) reclaim() {
	for _, p := range e.liveRuns() {
		for _, stream := range []string{p.pk.Stream, p.pk.Retry(e.group)} {
			e.claimIdle(p, stream, e.o.visibility)
		}
	}
}

func (e *engine) claimIdle(p *pstate, stream string, idle time.Duration) {
	start := "0-0"
	for p.ctx.Err() == nil {
		// Claim first, then count the budget: readers may hold every slot
		// while they block.
		es, next, deleted, err := e.c.db.AutoClaim(p.ctx, stream, e.group, e.o.consumer, idle.Milliseconds(), start, int64(e.o.readBatch))
		if err != nil {
			if p.ctx.Err() == nil && !rdb.IsNoGroup(err) {
				e.noteErr("reclaim", err)
			}
			return
		}
		if deleted > 0 {
			e.stats.trimmed.Add(int64(deleted))
			e.c.log.Warn("pending entries were trimmed before they were handled; dropped", "stream", stream, "count", deleted)
		}
		if len(es) > 0 {
			e.stats.reclaimed.Add(int64(len(es)))
			e.c.log.Info("reclaimed entries of a silent consumer", "stream", stream, "count", len(es))
			e.budget.force(len(es))
			p.dispatch(es, len(es), nil, false) // not the reader: acks go to the acker
		}
		if next == "0-0" || next == "" {
			return
		}
		start = next
	}
}

func (e *engine) forgetIdleConsumers() {
	ctx, cancel := context.WithTimeout(e.fetchCtx, 10*time.Second)
	defer cancel()
	for _, pk := range e.t.parts {
		for _, stream := range []string{pk.Stream, pk.Retry(e.group)} {
			n, err := e.c.db.ForgetIdleConsumers(ctx, stream, e.group, e.o.consumer, idleConsumerAfter.Milliseconds())
			if err != nil {
				if ctx.Err() == nil && !rdb.IsNoGroup(err) {
					e.noteErr("forget idle consumers", err)
				}
				continue
			}
			if n > 0 {
				e.c.log.Info("removed idle consumers that held nothing", "stream", stream, "group", e.group, "count", n)
			}
		}
	}
}
