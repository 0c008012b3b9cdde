package herald

import (
	"context"
	"slices"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// Partition ownership of ordered subscriptions.
//
// Each consumer heartbeats into the group's live set (a sorted set scored by
// expiry) every lease/3, sorts the live names and takes the partitions p
// with p mod live == its index: 8 partitions over 4 consumers gives 2 each,
// and consumers beyond the partition count get none (hot standbys). A
// partition is read under a lease (a key on the partition's slot, SET PX
// through lease_acquire.lua) renewed every lease/3. Fencing: a consumer
// stops handling a partition at (send time of its last successful renewal +
// lease - margin); Redis expires the key no earlier than (that send time +
// lease), so the old owner has stopped before anyone else can acquire it.
// A consumer that is no longer assigned a partition stops reading it, lets
// its handlers finish, sends the acks and deletes the lease (if still its
// own) so that the next owner takes it at once. A new owner first claims
// every pending entry of the group on the partition and handles them in
// stream order before it reads new ones.

// leaseMargin is how long before the lease's expiry in Redis a consumer
// stops handling the partition.
func (o *subOptions) leaseMargin() time.Duration {
	return max(o.lease/10, 20*time.Millisecond)
}

// joinWindow is how long a new consumer waits between announcing itself and
// taking partitions.
const joinWindow = 50 * time.Millisecond

func (e *engine) ownerLoop() {
	defer e.side.Done()
	tick := min(e.o.lease/3, time.Second)
	leaseMS := e.o.lease.Milliseconds()
	first := e.t.parts[0]
	var members []string
	timer := time.NewTimer(0)
	defer timer.Stop()
	// The first round only announces this consumer; partitions are taken from
	// the second, shortly after, so that consumers started together see each
	// other before any takes every partition.
	joined := false
	for {
		select {
		case <-e.fetchCtx.Done():
			e.leaveAll()
			return
		case <-timer.C:
		case <-e.kick:
		}
		next := time.Now().Add(tick)
		ctx, cancel := context.WithTimeout(e.fetchCtx, tick)
		if ms, err := e.c.db.Heartbeat(ctx, first, e.group, e.o.consumer, leaseMS); err != nil {
			if ctx.Err() == nil && e.fetchCtx.Err() == nil {
				e.noteErr("heartbeat", err)
			}
		} else {
			members = ms
		}
		e.renew(ctx)
		if members != nil && joined {
			e.balance(ctx, members)
		}
		cancel()
		if !joined && members != nil {
			joined = true
			next = time.Now().Add(min(tick, joinWindow))
		}
		timer.Reset(time.Until(next))
	}
}

// assigned reports the partitions consumer me should own among members.
func assigned(parts int, members []string, me string) []bool {
	ms := slices.Clone(members)
	if !slices.Contains(ms, me) {
		ms = append(ms, me)
	}
	slices.Sort(ms)
	i := slices.Index(ms, me)
	out := make([]bool, parts)
	for p := range parts {
		out[p] = p%len(ms) == i
	}
	return out
}

// renew extends every held lease; a lost one ends its run at once. A run
// that is ending (handed back, fenced, or finishing while the subscription
// stops) keeps its lease renewed until it is finished, so that no next
// owner takes over an entry one of its handlers is still running.
func (e *engine) renew(ctx context.Context) {
	e.mu.Lock()
	var held []*pstate
	for _, p := range e.parts {
		if p == nil || p.lost.Load() {
			continue
		}
		select {
		case <-p.finished:
		default:
			held = append(held, p)
		}
	}
	e.mu.Unlock()
	if len(held) == 0 {
		return
	}
	refs := make([]rdb.LeaseRef, len(held))
	for i, p := range held {
		refs[i] = rdb.LeaseRef{Keys: p.pk, Value: p.lease.Value}
	}
	sent := e.now()
	ok, errs := e.c.db.LeaseRenew(ctx, e.group, refs, e.o.lease.Milliseconds())
	until := sent + int64(e.o.lease-e.o.leaseMargin())
	for i, p := range held {
		switch {
		case ok[i]:
			p.validUntil.Store(until)
		case errs[i] == nil:
			e.c.log.Warn("partition lease lost; stopped handling it", "topic", e.t.name, "group", e.group, "partition", p.idx)
			e.endRun(p, false)
		default:
			if ctx.Err() == nil {
				e.noteErr("renew lease", errs[i])
			}
			if e.now() >= p.validUntil.Load() { // expired while Redis could not be reached
				e.endRun(p, false)
			}
		}
	}
}

// balance takes free assigned partitions and hands back the others.
func (e *engine) balance(ctx context.Context, members []string) {
	want := assigned(len(e.t.parts), members, e.o.consumer)
	for p := range e.t.parts {
		e.mu.Lock()
		ps := e.parts[p]
		e.mu.Unlock()
		running := ps != nil && !ps.closed.Load()
		if running && !want[p] {
			e.endRun(ps, true)
			continue
		}
		if !want[p] || running || ctx.Err() != nil {
			continue
		}
		if ps != nil {
			select {
			case <-ps.finished:
			default:
				continue // the previous run is still finishing
			}
		}
		sent := e.now()
		l, ok, err := e.c.db.LeaseAcquire(ctx, e.t.parts[p], e.group, e.o.consumer, e.instance, e.o.lease.Milliseconds())
		if err != nil {
			if ctx.Err() == nil {
				e.noteErr("acquire lease", err)
			}
			continue
		}
		if ok {
			e.c.log.Debug("partition lease acquired", "topic", e.t.name, "group", e.group, "partition", p, "token", l.Token)
			e.startPart(p, l, sent+int64(e.o.lease-e.o.leaseMargin()))
		}
	}
}

// endRun stops a partition run: its reader stops, its events not yet handled
// are skipped (left pending for the next owner). When release is set (the
// lease is still valid), the lease is deleted once the run is finished, so
// that the next owner takes over at once.
func (e *engine) endRun(p *pstate, release bool) {
	if !release {
		p.lost.Store(true)
	}
	if !p.closed.CompareAndSwap(false, true) {
		return
	}
	p.cancel()
	if !release {
		return
	}
	e.side.Add(1)
	go func() {
		defer e.side.Done()
		<-p.finished
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := e.c.db.LeaseRelease(ctx, p.pk, e.group, p.lease.Value); err != nil {
			e.noteErr("release lease", err)
		}
	}()
}

// leaveAll runs when the subscription stops: it waits for every run to
// finish (Drain: the events read are handled; Stop: skipped), releases the
// leases still held and leaves the live set.
func (e *engine) leaveAll() {
	e.mu.Lock()
	parts := append([]*pstate(nil), e.parts...)
	e.mu.Unlock()
	// Handlers may still be running (Drain handles every event read; Stop
	// lets the running calls return): the leases are renewed until each run
	// is finished, as while the subscription ran.
	tick := min(e.o.lease/3, time.Second)
	renewals := time.NewTicker(tick)
	defer renewals.Stop()
	for _, p := range parts {
		if p == nil {
			continue
		}
		for waiting := true; waiting; {
			select {
			case <-p.finished:
				waiting = false
			case <-renewals.C:
				ctx, cancel := context.WithTimeout(context.Background(), tick)
				e.renew(ctx)
				cancel()
			}
		}
		if p.closed.CompareAndSwap(false, true) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := e.c.db.LeaseRelease(ctx, p.pk, e.group, p.lease.Value); err != nil {
				e.noteErr("release lease", err)
			}
			cancel()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.c.db.Heartbeat(ctx, e.t.parts[0], e.group, e.o.consumer, 0); err != nil {
		e.noteErr("leave group", err)
	}
}
