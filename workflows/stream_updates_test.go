package workflows

import (
	"strings"
	"testing"
	"time"
)

// controlCallbacks collects the outcome of a control Update in the test
// environment.
type controlCallbacks struct {
	rejected error
	reply    ControlReply
	err      error
	at       time.Duration
	env      interface{ Now() time.Time }
}

func (u *controlCallbacks) Accept()          {}
func (u *controlCallbacks) Reject(err error) { u.rejected = err }
func (u *controlCallbacks) Complete(v any, e error) {
	u.reply, _ = v.(ControlReply)
	u.err = e
	u.at = u.env.Now().Sub(streamStart)
}

// TestStreamControlUpdates: pause answers once every lease stopped, with
// the offsets; resume answers once the leases run again; a resume while
// running is refused; stop answers once the partitions are drained, with
// the drain targets as offsets, and the run completes after it.
func TestStreamControlUpdates(t *testing.T) {
	env, log := newStreamEnv(t, 4, nil)
	pause, early, resume, stop, stopAgain := &controlCallbacks{env: env}, &controlCallbacks{env: env}, &controlCallbacks{env: env}, &controlCallbacks{env: env}, &controlCallbacks{env: env}
	at(env, 5*time.Second, func() { env.UpdateWorkflow(UpdateResume, "early", early) })
	at(env, 10*time.Second, func() { env.UpdateWorkflow(UpdatePause, "pause", pause) })
	at(env, time.Hour, func() { env.UpdateWorkflow(UpdateResume, "resume", resume) })
	at(env, 2*time.Hour, func() { env.UpdateWorkflow(UpdateStop, "stop", stop) })
	at(env, 2*time.Hour, func() { env.UpdateWorkflow(UpdateStop, "stop-again", stopAgain) })
	env.ExecuteWorkflow(StreamIngestWorkflow, StreamInput{Topic: testTopic, Leases: 2})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if early.rejected == nil || !strings.Contains(early.rejected.Error(), "not paused: nothing to resume") {
		t.Errorf("resume while running: %v", early.rejected)
	}
	if pause.rejected != nil || pause.err != nil || pause.reply.State != StreamPaused || len(pause.reply.Offsets) != 4 {
		t.Errorf("pause: refused %v, err %v, reply %+v", pause.rejected, pause.err, pause.reply)
	}
	log.mu.Lock()
	cancelled := len(log.cancelled)
	log.mu.Unlock()
	if cancelled != 2+2 { // by pause, then by stop before its drain
		t.Errorf("%d leases cancelled, want 4", cancelled)
	}
	if resume.rejected != nil || resume.reply.State != StreamRunning || resume.at != time.Hour {
		t.Errorf("resume: refused %v, reply %+v at %s", resume.rejected, resume.reply, resume.at)
	}
	if got := slotsOf(log.startsBetween(time.Hour, time.Hour+time.Second)); len(got) != 2 {
		t.Errorf("after resume: slots %v started, want 2", got)
	}
	want := []PartitionOffset{{0, 100}, {1, 200}, {2, 300}, {3, 400}}
	if stop.rejected != nil || stop.err != nil || stop.reply.State != StreamStopped || len(stop.reply.Offsets) != 4 {
		t.Fatalf("stop: refused %v, err %v, reply %+v", stop.rejected, stop.err, stop.reply)
	}
	for i, o := range stop.reply.Offsets {
		if o != want[i] {
			t.Errorf("stop offsets %+v, want %+v", stop.reply.Offsets, want)
			break
		}
	}
	if stopAgain.rejected != nil || stopAgain.reply.State != StreamStopped {
		t.Errorf("a second stop while stopping: refused %v, reply %+v; want it to wait for the same stop", stopAgain.rejected, stopAgain.reply)
	}
}
