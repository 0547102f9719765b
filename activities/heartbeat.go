package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeat keeps a batch activity's heartbeat going for as long as it
// works. Beat records progress (what a retry resumes from); between beats
// the last progress is sent again every third of the heartbeat timeout, so
// a statement, a read or a link slower than the timeout (a big hour, 500 ms
// to the database) does not make a live worker look dead. Only a worker
// that is dead, or that Temporal cannot hear, misses the timeout.
type heartbeat struct {
	ctx     context.Context
	mu      sync.Mutex // held while sending, so the latest progress is sent last
	details []any
	done    chan struct{}
}

// startHeartbeat starts repeating details until Stop.
func startHeartbeat(ctx context.Context, details ...any) *heartbeat {
	h := &heartbeat{ctx: ctx, details: details, done: make(chan struct{})}
	go tick(h.done, heartbeatInterval(ctx), func(time.Time) bool {
		if ctx.Err() != nil {
			return false
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		activity.RecordHeartbeat(ctx, h.details...)
		return true
	})
	return h
}

// Beat records progress and sends it.
func (h *heartbeat) Beat(details ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.details = details
	activity.RecordHeartbeat(h.ctx, details...)
}

// Stop ends the repetition.
func (h *heartbeat) Stop() { close(h.done) }

// heartbeatInterval is a third of the activity's heartbeat timeout, 5 s at
// most (and without one). The SDK sends at most one heartbeat per 80% of
// the timeout and keeps the latest details for it, so a shorter interval
// costs nothing.
func heartbeatInterval(ctx context.Context) time.Duration {
	beat := activity.GetInfo(ctx).HeartbeatTimeout / 3
	if beat <= 0 || beat > 5*time.Second {
		beat = 5 * time.Second
	}
	return beat
}
