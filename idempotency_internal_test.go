package herald

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redistest"
)

// A batch whose reply is lost (the first send did land) is sent again with the
// same sequence number and stored once; the caller gets the first positions.
func TestRetriedBatchStoredOnce(t *testing.T) {
	c, err := New(Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t), DefaultTopic: TopicConfig{Partitions: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var lost atomic.Int32
	c.testHookAppended = func() error {
		if lost.Add(1) == 1 {
			return errors.New("i/o timeout (simulated lost reply)")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs := []Event{{Key: "a", Data: []byte("1")}, {Key: "a", Data: []byte("2")}, {Key: "a", Data: []byte("3")}}
	ps, err := c.PublishBatch(ctx, "t", evs)
	if err != nil {
		t.Fatal(err)
	}
	if lost.Load() != 2 {
		t.Fatalf("append sent %d times, want 2 (one lost reply, one retry)", lost.Load())
	}
	ti, err := c.TopicInfo(ctx, "t")
	if err != nil || ti.Length != 3 {
		t.Fatalf("stored %d events (%v), want 3", ti.Length, err)
	}
	stored, _ := c.Events(ctx, "t", Query{})
	for i, p := range ps {
		if stored[i].Position != p.ID || string(stored[i].Data) != string(evs[i].Data) {
			t.Fatalf("position %d = %v, stored %+v", i, p, stored[i])
		}
	}
}
