package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
	"github.com/iot-etl/iot-etl/internal/testsupport/streamcheck"
	"github.com/iot-etl/iot-etl/workflows"
)

// Intervals of the run's own bookkeeping.
const (
	tickEvery     = 250 * time.Millisecond // kills, recoveries and samples are checked this often
	timelineEvery = 30 * time.Second       // a sample goes into the results' timeline this often
	truncateEvery = 30 * time.Second       // the broker's log below the committed offsets is deleted this often
)

type options struct {
	duration     time.Duration
	rate         float64
	killEvery    time.Duration
	warmUp       time.Duration
	sample       time.Duration
	catchUp      time.Duration
	workers      int
	partitions   int
	leases       int
	devices      int
	seed         int64
	anomalyRatio float64
	badRatio     float64
	out          string
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench/soak", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the simulator publishes")
	fs.Float64Var(&o.rate, "rate", 10_000, "messages/s the simulator publishes")
	fs.DurationVar(&o.killEvery, "kill-every", 5*time.Minute, "kill -9 one worker this often (the slots take turns) and start a replacement")
	fs.DurationVar(&o.warmUp, "warm-up", time.Minute, "the workers' RSS at the start is read this long into the load")
	fs.DurationVar(&o.sample, "sample", 2*time.Second, "RSS and lag are sampled this often")
	fs.DurationVar(&o.catchUp, "catch-up", 10*time.Minute, "how long the stream has after the load to commit everything")
	fs.IntVar(&o.workers, "workers", 2, "worker processes")
	fs.IntVar(&o.partitions, "partitions", 6, "partitions of the topic")
	fs.IntVar(&o.leases, "leases", 3, "lease slots of the stream workflow")
	fs.IntVar(&o.devices, "devices", 1000, "simulated devices")
	fs.Int64Var(&o.seed, "seed", 42, "simulator seed")
	fs.Float64Var(&o.anomalyRatio, "anomaly-ratio", 0.02, "share of anomalous readings")
	fs.Float64Var(&o.badRatio, "bad-ratio", 0.01, "share of malformed messages (dead letters)")
	fs.StringVar(&o.out, "out", "bench/results/soak.json", "results file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.duration <= 0 || o.rate <= 0 || o.killEvery <= 0 || o.sample <= 0 || o.catchUp <= 0 ||
		o.workers < 1 || o.partitions < 1 || o.leases < 1 || o.devices < 1 {
		return o, errors.New("-duration, -rate, -kill-every, -sample, -catch-up, -workers, -partitions, -leases and -devices must be positive")
	}
	return o, nil
}

// Kill is one worker killed with SIGKILL and replaced.
type Kill struct {
	AtS          float64 `json:"at_s"` // since the load started
	Slot         int     `json:"slot"`
	KilledPID    int     `json:"killed_pid"`
	KilledRSSKiB int64   `json:"killed_rss_kib"`
	StartedPID   int     `json:"started_pid"`
	// RecoveryS is the time from the kill until every partition committed
	// past the offset it had committed at the kill; Recovered is false if
	// the load ended first.
	RecoveryS float64 `json:"recovery_s"`
	Recovered bool    `json:"recovered"`

	committedAt map[int32]int64
	at          time.Time
}

// WorkerRSS is the memory of one worker slot.
type WorkerRSS struct {
	Slot        int   `json:"slot"`
	RSSStartKiB int64 `json:"rss_start_kib"` // after the warm-up
	StartPID    int   `json:"start_pid"`
	RSSEndKiB   int64 `json:"rss_end_kib"` // when the load ended
	EndPID      int   `json:"end_pid"`
	// EndProcessAgeS is how long the process of RSSEndKiB had been
	// running: after a kill it is the replacement.
	EndProcessAgeS float64 `json:"end_process_age_s"`
	PeakRSSEndKiB  int64   `json:"end_process_peak_rss_kib"` // its VmHWM
	RSSMaxKiB      int64   `json:"rss_max_kib"`              // the largest sample of any process of the slot
	Processes      int     `json:"processes"`
}

// Sample is one point of the timeline.
type Sample struct {
	AtS    float64 `json:"at_s"`
	Sent   int64   `json:"sent"`
	Lag    int64   `json:"lag"`
	RSSKiB []int64 `json:"rss_kib"` // per slot
}

// Figures are what soak.json records.
type Figures struct {
	DurationS    float64 `json:"duration_s"` // of the load
	TargetRate   float64 `json:"target_messages_per_s"`
	KillEveryS   float64 `json:"kill_every_s"`
	WarmUpS      float64 `json:"warm_up_s"`
	SampleS      float64 `json:"sample_every_s"`
	Workers      int     `json:"workers"`
	Partitions   int     `json:"partitions"`
	Leases       int     `json:"leases"`
	Devices      int     `json:"devices"`
	AnomalyRatio float64 `json:"anomaly_ratio"`
	BadRatio     float64 `json:"bad_ratio"`

	Messages     int64   `json:"messages"` // published and acknowledged
	Bad          int64   `json:"bad"`      // of them malformed
	AchievedRate float64 `json:"achieved_messages_per_s"`

	Kills         []Kill      `json:"kills"`
	KillCount     int         `json:"kill_count"`
	MaxRecoveryS  float64     `json:"max_recovery_s"`
	WorkersRSS    []WorkerRSS `json:"workers_rss"`
	MaxLag        int64       `json:"max_lag"`
	MaxLagAtS     float64     `json:"max_lag_at_s"`
	CatchUpS      float64     `json:"catch_up_s"` // from the load's end to every partition committed at its high watermark
	Latency       Latency     `json:"latency"`
	LeaseAttempts int64       `json:"lease_attempts"`
	LeaseFailures int64       `json:"lease_failures"`

	RawRows     int64    `json:"raw_rows"`
	DeadLetters int64    `json:"dead_letters"`
	Lost        int64    `json:"lost"`
	Duplicated  int64    `json:"duplicated"`
	Exact       bool     `json:"exact"`
	Problems    []string `json:"check_problems,omitempty"`

	ElapsedS     float64  `json:"elapsed_s"` // the whole run, set-up and check included
	LoadAvgStart float64  `json:"load_avg_1m_start"`
	LoadAvgEnd   float64  `json:"load_avg_1m_end"`
	Timeline     []Sample `json:"timeline"`
}

// soak is the run's state.
type soak struct {
	opts    options
	cfg     *config.Config
	ts      *pgxpool.Pool
	cluster *kfake.Cluster
	prod    *kgo.Client
	pool    *workerPool
	tracker *latencyTracker
	sent    atomic.Int64
	f       Figures
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, args []string) error {
	began := time.Now()
	opts, err := parseOptions(args)
	if err != nil {
		return err
	}
	base, err := config.Load(ctx)
	if err != nil {
		return err
	}
	stack, err := benchutil.OpenStack(ctx, base, "soak")
	if err != nil {
		return err
	}
	defer func() {
		if err := stack.Close(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(os.Stderr, "bench/soak:", err)
		}
	}()
	cfg := *stack.Cfg
	if err := seeder.ReplaceDevices(ctx, stack.MySQL, simulate.NewFleet(opts.seed, opts.devices)); err != nil {
		return err
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(opts.partitions), cfg.Kafka.Topic))
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	defer cluster.Close()
	// The benchmark's own broker speaks plain Kafka, whatever KAFKA_TLS_*
	// and KAFKA_SASL_* say of the operator's cluster.
	cfg.Kafka = config.Kafka{BootstrapServers: cluster.ListenAddrs(), Topic: cfg.Kafka.Topic, Partitions: cfg.Kafka.Partitions}

	step("starting a Temporal dev server and building the worker")
	wb, err := benchutil.StartWorkbench(ctx, "soak")
	if err != nil {
		return err
	}
	defer wb.Close() // the workers' logs stay when the run fails (KeepDir)
	benchutil.UseDevServer(&cfg, wb.Server.Addr)
	cfg.Temporal.StreamTaskQueue = "bench-soak"
	cfg.LogLevel = "warn"

	prod, err := kafka.NewClient(cfg.Kafka, nil, kafka.ProducerOptions(cfg.Kafka.Topic)...)
	if err != nil {
		return err
	}
	defer prod.Close()
	s := &soak{
		opts: opts, cfg: &cfg, ts: stack.Timescale, cluster: cluster, prod: prod,
		pool:    newWorkerPool(wb.WorkerBin, wb.Dir, cfg.Env(), opts.workers),
		tracker: newLatencyTracker(int(opts.rate*opts.duration.Seconds()*1.01) + 1024),
	}
	s.f = Figures{
		DurationS: opts.duration.Seconds(), TargetRate: opts.rate, KillEveryS: opts.killEvery.Seconds(),
		WarmUpS: opts.warmUp.Seconds(), SampleS: opts.sample.Seconds(), Workers: opts.workers,
		Partitions: opts.partitions, Leases: min(opts.leases, opts.partitions), Devices: opts.devices,
		AnomalyRatio: opts.anomalyRatio, BadRatio: opts.badRatio, LoadAvgStart: benchutil.LoadAverage(),
		Kills: []Kill{}, Timeline: []Sample{},
	}
	for i := range opts.workers {
		if _, err := s.pool.start(i); err != nil {
			return err
		}
	}
	defer s.pool.stop(30 * time.Second)

	if err := s.soak(ctx); err != nil {
		wb.KeepDir = true
		fmt.Fprintf(os.Stderr, "bench/soak: the workers' logs are kept in %s\n", wb.Dir)
		return err
	}
	s.f.ElapsedS = roundTo(time.Since(began).Seconds(), 0.001)
	s.f.LoadAvgEnd = benchutil.LoadAverage()
	res := benchutil.Result{
		Benchmark: "soak",
		RanAt:     time.Now().UTC(),
		Machine:   benchutil.Describe(ctx, s.ts),
		Figures:   s.f,
		Notes:     notes(s.f),
	}
	if err := benchutil.Write(opts.out, res); err != nil {
		return err
	}
	printSummary(s.f)
	fmt.Println("written to", opts.out)
	if s.f.Lost != 0 || s.f.Duplicated != 0 || !s.f.Exact {
		return fmt.Errorf("lost %d, duplicated %d, check problems: %s", s.f.Lost, s.f.Duplicated, strings.Join(s.f.Problems, "; "))
	}
	return nil
}

// soak starts the stream, runs the load with its kills, waits for the
// stream to catch up and checks it.
func (s *soak) soak(ctx context.Context) error {
	o := s.opts
	tc, err := temporalx.Dial(ctx, s.cfg.Temporal, nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	topic := s.cfg.Kafka.Topic
	wf, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.StreamWorkflowID(topic), TaskQueue: s.cfg.Temporal.StreamTaskQueue},
		workflows.StreamWorkflowName, workflows.StreamInput{Topic: topic, Leases: o.leases})
	if err != nil {
		return err
	}
	step("stream started (%d workers, %d leases, %d partitions); waiting for the leases to claim every partition", o.workers, s.f.Leases, o.partitions)
	if err := benchutil.WaitFor(ctx, 2*time.Minute, func() (bool, error) {
		offs, err := sink.ReadOffsets(ctx, s.ts, topic)
		return len(offs) == o.partitions, err
	}); err != nil {
		return fmt.Errorf("the leases did not claim every partition: %w", err)
	}

	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	polled := make(chan struct{})
	go func() { s.tracker.poll(pollCtx, s.ts, topic); close(polled) }()

	sim, err := producer.New(producer.Options{
		Seed: o.seed, Devices: o.devices, Rate: o.rate, Duration: o.duration,
		AnomalyRatio: o.anomalyRatio, BadRatio: o.badRatio,
		// Event time follows the wall clock one step of 1/rate per
		// message, so every (device, time) is unique and a record's
		// timestamp is when it was due.
		Start:         time.Now(),
		ProgressEvery: time.Second, Progress: func(r producer.Report) { s.sent.Store(r.Sent) },
	})
	if err != nil {
		return err
	}
	step("load: %.0f messages/s for %s, one worker killed every %s", o.rate, o.duration, o.killEvery)
	type loadEnd struct {
		rep producer.Report
		err error
	}
	loadDone := make(chan loadEnd, 1)
	loadStart := time.Now()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go func() {
		rep, err := sim.Run(loadCtx, &recordingPublisher{cl: s.prod, tr: s.tracker})
		loadDone <- loadEnd{rep, err}
	}()

	var end loadEnd
	driveErr := s.drive(ctx, loadStart, func() bool {
		select {
		case end = <-loadDone:
			s.sent.Store(end.rep.Sent) // the last sample counts every message, not the last progress report
			return true
		default:
			return false
		}
	})
	if driveErr != nil {
		stopLoad()
		<-loadDone
		return driveErr
	}
	if end.err != nil {
		return fmt.Errorf("load: %w", end.err)
	}
	rep := end.rep
	s.f.Messages, s.f.Bad, s.f.AchievedRate = rep.Sent, rep.BadTotal(), roundTo(rep.PerSecond(), 0.1)
	step("load done: %d messages in %.0f s (%.0f/s); waiting for the stream to catch up", rep.Sent, rep.Elapsed.Seconds(), rep.PerSecond())

	ends, err := kafka.HighWatermarks(ctx, s.prod, topic)
	if err != nil {
		return err
	}
	caughtUp := time.Now()
	if err := benchutil.WaitFor(ctx, o.catchUp, func() (bool, error) {
		committed := s.tracker.committedOffsets()
		for p, hwm := range ends {
			if committed[p] < hwm {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		// The check below says what is missing.
		step("the stream did not catch up within %s", o.catchUp)
	}
	s.f.CatchUpS = roundTo(time.Since(caughtUp).Seconds(), 0.001)
	stopPolling()
	<-polled
	s.f.Latency = s.tracker.summary()

	step("checking the stream exactly")
	by := map[string]int64{}
	for reason, n := range rep.Bad {
		by[string(reason)] = n
	}
	chk, err := streamcheck.Check(ctx, s.ts, s.prod, topic, streamcheck.Expect{Produced: rep.Sent, Quarantined: rep.BadTotal(), ByReason: by})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	s.f.RawRows, s.f.DeadLetters, s.f.Lost, s.f.Duplicated = chk.Raw, chk.DeadLetters, chk.Lost, chk.Duplicated
	s.f.Exact, s.f.Problems = chk.Exact(), chk.Problems

	if err := tc.SignalWorkflow(ctx, wf.GetID(), "", workflows.SignalStop, nil); err != nil {
		return fmt.Errorf("stop the stream: %w", err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var st workflows.StreamStatus
	if err := wf.Get(stopCtx, &st); err != nil {
		return fmt.Errorf("stream workflow: %w", err)
	}
	s.f.LeaseAttempts, s.f.LeaseFailures = st.LeaseAttempts, st.LeaseFailures
	return nil
}

// drive samples, kills and replaces workers, and truncates the broker's
// log until loadEnded says the load is over.
func (s *soak) drive(ctx context.Context, loadStart time.Time, loadEnded func() bool) error {
	o := s.opts
	topic := s.cfg.Kafka.Topic
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	rss := make([]WorkerRSS, o.workers)
	for i := range rss {
		rss[i] = WorkerRSS{Slot: i, Processes: 1}
	}
	var (
		nextSample, nextTimeline, nextTruncate time.Time
		nextKill                               = o.killEvery
		rssStarted, truncateFailed             bool
	)
	sample := func(now time.Time, timeline bool) error {
		committed := s.tracker.committedOffsets()
		hwms, err := kafka.HighWatermarks(ctx, s.prod, topic)
		if err != nil {
			return err
		}
		var lag int64
		for p, hwm := range hwms {
			lag += hwm - committed[p]
		}
		at := roundTo(now.Sub(loadStart).Seconds(), 0.001)
		if lag > s.f.MaxLag {
			s.f.MaxLag, s.f.MaxLagAtS = lag, at
		}
		smp := Sample{AtS: at, Sent: s.sent.Load(), Lag: lag, RSSKiB: make([]int64, o.workers)}
		for i := range rss {
			smp.RSSKiB[i] = s.pool.rss(i)
			rss[i].RSSMaxKiB = max(rss[i].RSSMaxKiB, smp.RSSKiB[i])
		}
		if timeline {
			s.f.Timeline = append(s.f.Timeline, smp)
			mib := make([]string, len(smp.RSSKiB))
			for i, k := range smp.RSSKiB {
				mib[i] = strconv.FormatInt(k/1024, 10)
			}
			step("%4.0fs  sent %d  lag %d  worker RSS %s MiB", at, smp.Sent, lag, strings.Join(mib, "/"))
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		now := time.Now()
		if loadEnded() {
			// The end of the load is the end of the RSS measurement.
			if err := sample(now, true); err != nil {
				return err
			}
			for i := range rss {
				w := s.pool.slots[i]
				rss[i].RSSEndKiB, rss[i].EndPID = s.pool.rss(i), w.cmd.Process.Pid
				rss[i].EndProcessAgeS = roundTo(now.Sub(w.started).Seconds(), 0.001)
				rss[i].PeakRSSEndKiB = s.pool.peakRSS(i)
			}
			s.f.WorkersRSS = rss
			for i := range s.f.Kills {
				s.f.MaxRecoveryS = max(s.f.MaxRecoveryS, s.f.Kills[i].RecoveryS)
			}
			s.f.KillCount = len(s.f.Kills)
			return nil
		}
		if err := s.pool.exited(); err != nil {
			return err
		}
		elapsed := now.Sub(loadStart)
		s.checkRecoveries(now)
		if !now.Before(nextSample) {
			timeline := !now.Before(nextTimeline)
			if err := sample(now, timeline); err != nil {
				return err
			}
			nextSample = now.Add(o.sample)
			if timeline {
				nextTimeline = now.Add(timelineEvery)
			}
		}
		if !rssStarted && elapsed >= o.warmUp {
			rssStarted = true
			for i := range rss {
				rss[i].RSSStartKiB, rss[i].StartPID = s.pool.rss(i), s.pool.slots[i].cmd.Process.Pid
			}
		}
		if !now.Before(nextTruncate) {
			// Kafka's retention, in short: what every lease committed is
			// never read again, and kfake would otherwise hold every record
			// of the run in memory.
			for p, next := range s.tracker.committedOffsets() {
				if err := s.cluster.DeleteRecords(topic, p, next); err != nil && !truncateFailed {
					truncateFailed = true
					step("deleting the records of partition %d below %d: %v (further failures not shown)", p, next, err)
				}
			}
			nextTruncate = now.Add(truncateEvery)
		}
		if elapsed >= nextKill && nextKill < o.duration {
			slot := len(s.f.Kills) % o.workers
			k := Kill{AtS: roundTo(elapsed.Seconds(), 0.001), Slot: slot, KilledRSSKiB: s.pool.rss(slot), committedAt: s.tracker.committedOffsets(), at: now}
			pid, err := s.pool.kill(slot)
			if err != nil {
				return err
			}
			w, err := s.pool.start(slot)
			if err != nil {
				return err
			}
			k.KilledPID, k.StartedPID = pid, w.cmd.Process.Pid
			rss[slot].Processes++
			s.f.Kills = append(s.f.Kills, k)
			step("%4.0fs  killed worker %d (pid %d, RSS %d MiB) with SIGKILL; started pid %d", k.AtS, slot, pid, k.KilledRSSKiB/1024, k.StartedPID)
			nextKill += o.killEvery
		}
	}
}

// checkRecoveries marks the kills after which every partition has
// committed past where it was at the kill.
func (s *soak) checkRecoveries(now time.Time) {
	var committed map[int32]int64
	for i := range s.f.Kills {
		k := &s.f.Kills[i]
		if k.Recovered {
			continue
		}
		if committed == nil {
			committed = s.tracker.committedOffsets()
		}
		recovered := len(committed) > 0
		for p, at := range k.committedAt {
			if committed[p] <= at {
				recovered = false
			}
		}
		if recovered {
			k.Recovered, k.RecoveryS = true, roundTo(now.Sub(k.at).Seconds(), 0.001)
			step("%4.0fs  every partition committed again %.1f s after kill %d", now.Sub(k.at).Seconds()+k.AtS, k.RecoveryS, i+1)
		}
	}
}

func notes(f Figures) []string {
	return []string{
		fmt.Sprintf("one run on %d cores: the PostgreSQL and MariaDB servers, the Temporal dev server, %d worker processes and this program (kfake with %d partitions, the simulator, the offset poller) share the machine", runtime.NumCPU(), f.Workers, f.Partitions),
		fmt.Sprintf("stream workflow with %d leases and the defaults of everything else (lease duration, heartbeat timeout, micro-batch bounds); the simulator publishes %.0f messages/s of %d devices through the idempotent producer, %.0f%% malformed (every quarantine reason), %.0f%% anomalous", f.Leases, f.TargetRate, f.Devices, f.BadRatio*100, f.AnomalyRatio*100),
		fmt.Sprintf("every %.0f s one worker (the slots take turns) is killed with SIGKILL and a replacement started at once; recovery_s is from the kill until every partition committed past its offset at the kill", f.KillEveryS),
		fmt.Sprintf("rss_start_kib is VmRSS of each slot's worker %.0f s into the load, rss_end_kib when the load ended (end_process_age_s says how long that process had run: a replacement when its slot was killed); rss_max_kib is the largest of the samples every %.0f s", f.WarmUpS, f.SampleS),
		"lag is the sum over partitions of high watermark - committed next_offset, sampled with the RSS; the broker's log below the committed offsets is deleted every 30 s (Kafka's retention), which changes neither",
		fmt.Sprintf("latency is bench/stream's: a poller reads stream_offsets every %.0f ms and a record counts as committed at the first poll whose committed offset of its partition passes it; latency = that time - the record's timestamp (its event time: one 1/rate step per message from the load's start, the moment it was due); it includes the producer's 20 ms linger, the micro-batch wait and the redelivery after each kill", f.Latency.PollMS),
		"lost and duplicated come from streamcheck.Check after the catch-up: lost = sent - malformed - raw rows, duplicated = the duplicates counter of stream_offsets (a redelivery the offsets did not fence); the check also compares dead letters by reason, windows with a recomputation from the raw rows, and next_offset with the high watermarks",
	}
}

func printSummary(f Figures) {
	fmt.Printf("soak: %d messages in %.0f s (%.0f/s of %.0f), %d kills, max recovery %.1f s, max lag %d, catch-up %.1f s\n",
		f.Messages, f.DurationS, f.AchievedRate, f.TargetRate, f.KillCount, f.MaxRecoveryS, f.MaxLag, f.CatchUpS)
	l := f.Latency
	fmt.Printf("latency (%d of %d measured): p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms\n", l.Measured, f.Messages, l.P50ms, l.P90ms, l.P99ms, l.MaxMS)
	for _, w := range f.WorkersRSS {
		fmt.Printf("worker %d: RSS %d MiB at %.0f s, %d MiB at the end (process of %.0f s, peak %d MiB), max %d MiB, %d processes\n",
			w.Slot, w.RSSStartKiB/1024, f.WarmUpS, w.RSSEndKiB/1024, w.EndProcessAgeS, w.PeakRSSEndKiB/1024, w.RSSMaxKiB/1024, w.Processes)
	}
	fmt.Printf("raw rows %d, dead letters %d, lost %d, duplicated %d, exact %v; lease attempts %d, failures %d; elapsed %.0f s\n",
		f.RawRows, f.DeadLetters, f.Lost, f.Duplicated, f.Exact, f.LeaseAttempts, f.LeaseFailures, f.ElapsedS)
}
