package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
)

type options struct {
	workers []int
	batch   bool
	stream  bool

	devices int // batch
	days    int
	shards  int

	messages      int64 // stream
	streamDevices int
	partitions    int
	leases        int
	seed          int64

	out string
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench/scale", flag.ContinueOnError)
	workers := fs.String("workers", "1,2", "worker process counts to run, comma-separated")
	pipelines := fs.String("pipelines", "batch,stream", "pipelines to measure: batch, stream or both")
	quick := fs.Bool("quick", false, "smoke run: 20 devices x 1 day for the batch, 100,000 messages for the stream (flags given explicitly win)")
	fs.IntVar(&o.devices, "devices", 100, "batch: seeded devices")
	fs.IntVar(&o.days, "days", 7, "batch: UTC days of 1-minute readings per device")
	fs.IntVar(&o.shards, "shards", 8, "batch: transform/load shards")
	fs.Int64Var(&o.messages, "messages", 1_000_000, "stream: messages to pre-produce and ingest")
	fs.IntVar(&o.streamDevices, "stream-devices", 1000, "stream: simulated devices")
	fs.IntVar(&o.partitions, "partitions", 6, "stream: partitions of the topic")
	fs.IntVar(&o.leases, "leases", 6, "stream: lease slots of the stream workflow (at most one per partition), the units the workers share")
	fs.Int64Var(&o.seed, "seed", 42, "seed of the seeder and the simulator")
	fs.StringVar(&o.out, "out", "bench/results/scale.json", "results file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *quick {
		if err := benchutil.SetUnset(fs, map[string]string{"devices": "20", "days": "1", "messages": "100000"}); err != nil {
			return o, err
		}
	}
	for _, s := range strings.Split(*workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-workers: %q is not a positive count", s)
		}
		o.workers = append(o.workers, n)
	}
	for _, p := range strings.Split(*pipelines, ",") {
		switch strings.TrimSpace(p) {
		case "batch":
			o.batch = true
		case "stream":
			o.stream = true
		default:
			return o, fmt.Errorf("-pipelines: unknown pipeline %q", p)
		}
	}
	if o.devices < 1 || o.days < 1 || o.shards < 1 || o.messages < 1 || o.streamDevices < 1 || o.partitions < 1 || o.leases < 1 {
		return o, errors.New("-devices, -days, -shards, -messages, -stream-devices, -partitions and -leases must be positive")
	}
	return o, nil
}

// CPU is CPU time by component: seconds, or microseconds per row.
type CPU struct {
	Worker   float64 `json:"worker"`   // every worker process
	Postgres float64 `json:"postgres"` // the postmaster's tree, reaped backends included
	Temporal float64 `json:"temporal"` // the dev server
	Bench    float64 `json:"bench"`    // this process: kfake, the pollers, the clients
	Total    float64 `json:"total"`
}

// scaled is c times f, rounded to 0.01: CPU time is counted in ticks of
// 1/100 s.
func (c CPU) scaled(f float64) CPU {
	return CPU{Worker: round(c.Worker * f), Postgres: round(c.Postgres * f), Temporal: round(c.Temporal * f), Bench: round(c.Bench * f), Total: round(c.Total * f)}
}

func round(v float64) float64 { return math.Round(v*100) / 100 }

// Run is one pipeline with one worker count.
type Run struct {
	Workers  int     `json:"workers"`
	Rows     int64   `json:"rows"`
	Seconds  float64 `json:"seconds"`
	RowsPerS float64 `json:"rows_per_s"`
	// PhaseSeconds are the batch's own phase timings (BatchResult).
	PhaseSeconds map[string]float64 `json:"phase_seconds,omitempty"`
	CPUSeconds   CPU                `json:"cpu_seconds"`
	CPUusPerRow  CPU                `json:"cpu_us_per_row"`
	// WorkerCPUSeconds is each worker process's share of CPUSeconds.Worker:
	// how evenly the work spread.
	WorkerCPUSeconds []float64 `json:"worker_cpu_seconds_each"`
	// CoresBusy is CPUSeconds.Total / Seconds: how many cores the measured
	// components kept busy on average.
	CoresBusy float64 `json:"cores_busy"`
	// OtherCPUSeconds is the machine's busy CPU time in the timed part
	// less CPUSeconds.Total: the kernel's share not charged to a process
	// and everything else running on the machine.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	LoadAvgStart    float64 `json:"load_avg_1m_start"`
}

// newRun computes the derived figures of a timed part.
func newRun(workers int, rows int64, elapsed time.Duration, d cpuDelta) Run {
	s := elapsed.Seconds()
	each := make([]float64, len(d.workers))
	for i, w := range d.workers {
		each[i] = round(w)
	}
	return Run{
		Workers: workers, Rows: rows, Seconds: math.Round(s*1000) / 1000, RowsPerS: math.Round(float64(rows) / s),
		CPUSeconds: d.cpu.scaled(1), CPUusPerRow: d.cpu.scaled(1e6 / float64(rows)), WorkerCPUSeconds: each,
		CoresBusy: round(d.cpu.Total / s), OtherCPUSeconds: round(d.machine - d.cpu.Total), LoadAvgStart: d.loadAvg,
	}
}

// Pipeline is the runs of one pipeline.
type Pipeline struct {
	Runs []Run `json:"runs"`
	// Speedup2Over1 is rows_per_s with 2 workers / with 1; 0 when either
	// was not run.
	Speedup2Over1 float64 `json:"speedup_2_over_1"`
}

func (p *Pipeline) add(r Run) {
	p.Runs = append(p.Runs, r)
	i1 := slices.IndexFunc(p.Runs, func(r Run) bool { return r.Workers == 1 })
	i2 := slices.IndexFunc(p.Runs, func(r Run) bool { return r.Workers == 2 })
	if i1 >= 0 && i2 >= 0 {
		p.Speedup2Over1 = math.Round(p.Runs[i2].RowsPerS/p.Runs[i1].RowsPerS*1000) / 1000
	}
}

// BatchFigures are the batch's runs and their set-up.
type BatchFigures struct {
	Devices  int   `json:"devices"`
	Days     int   `json:"days"`
	Shards   int   `json:"shards"`
	Readings int64 `json:"readings"`
	Pipeline
}

// StreamFigures are the stream's runs and their set-up.
type StreamFigures struct {
	Messages   int64 `json:"messages"`
	Devices    int   `json:"devices"`
	Partitions int   `json:"partitions"`
	Leases     int   `json:"leases"`
	// ProduceSeconds and ProduceCPUusPerRow are the pre-production of the
	// first run, outside the timed part: the producer's cost, which a
	// deployment pays on the devices' side.
	ProduceSeconds     float64 `json:"produce_seconds"`
	ProduceCPUusPerRow float64 `json:"produce_cpu_us_per_row"`
	Pipeline
}

// Figures are what scale.json records.
type Figures struct {
	Cores  int            `json:"cores"`
	Batch  *BatchFigures  `json:"batch,omitempty"`
	Stream *StreamFigures `json:"stream,omitempty"`
}

// env is what every run shares: the configuration, the dev server and the
// worker binary.
type env struct {
	base      *config.Config
	srv       *temporalx.DevServer
	workerBin string
	dir       string // the workers' logs and the batch's exports
	opts      options
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, args []string) error {
	opts, err := parseOptions(args)
	if err != nil {
		return err
	}
	base, err := config.Load(ctx)
	if err != nil {
		return err
	}
	step("starting a Temporal dev server and building the worker")
	wb, err := benchutil.StartWorkbench(ctx, "scale")
	if err != nil {
		return err
	}
	defer wb.Close()
	e := &env{base: base, srv: wb.Server, workerBin: wb.WorkerBin, dir: wb.Dir, opts: opts}

	f := Figures{Cores: runtime.NumCPU()}
	var machine benchutil.Machine
	each := func(pipeline string, measure func(k int) error) error {
		for _, k := range opts.workers {
			if err := measure(k); err != nil {
				wb.KeepDir = true // the workers' logs
				return fmt.Errorf("%s with %d workers (logs in %s): %w", pipeline, k, wb.Dir, err)
			}
		}
		return nil
	}
	if opts.batch {
		f.Batch = &BatchFigures{Devices: opts.devices, Days: opts.days, Shards: opts.shards}
		err := each("batch", func(k int) error {
			r, readings, m, err := e.batch(ctx, k)
			machine, f.Batch.Readings = m, readings
			f.Batch.add(r)
			return err
		})
		if err != nil {
			return err
		}
	}
	if opts.stream {
		f.Stream = &StreamFigures{Messages: opts.messages, Devices: opts.streamDevices, Partitions: opts.partitions, Leases: min(opts.leases, opts.partitions)}
		err := each("stream", func(k int) error {
			r, produced, m, err := e.stream(ctx, k)
			machine = m
			if f.Stream.ProduceSeconds == 0 {
				f.Stream.ProduceSeconds, f.Stream.ProduceCPUusPerRow = produced.seconds, produced.cpuUsPerRow
			}
			f.Stream.add(r)
			return err
		})
		if err != nil {
			return err
		}
	}

	res := benchutil.Result{Benchmark: "scale", RanAt: time.Now().UTC(), Machine: machine, Figures: f, Notes: notes(f)}
	if err := benchutil.Write(opts.out, res); err != nil {
		return err
	}
	printTable(os.Stdout, f)
	fmt.Println("written to", opts.out)
	return nil
}

func notes(f Figures) []string {
	return []string{
		fmt.Sprintf("one machine of %d cores runs everything: the worker processes, the PostgreSQL server, the Temporal dev server, MariaDB and this program (kfake, the in-process Kafka broker, and the pollers); the worker processes compete for the same cores, so speedup_2_over_1 is bounded by the cores the other components leave free, not by the pipelines: read it with cores_busy and the per-row CPU cost", f.Cores),
		"each run starts from fresh databases (iot_bench_scale_*, dropped and created again, then seeded or produced with the same seed) and a fresh task queue on the one dev server; the timed part starts once every worker polls the queue (DescribeTaskQueue lists each as a poller of workflow and activity tasks)",
		"batch: BatchETLWorkflow over the whole seeded range, timed from the start to its result; rows = its RowsLoaded, checked equal to the seeded readings; phase_seconds are its own PhaseMillis; the workers serve only the batch queue with their default of 4 batch activities each",
		"stream: the messages are produced into kfake before the clock starts (produce_* figures, first run); timed from starting StreamIngestWorkflow until every partition's committed next_offset in stream_offsets reaches its high watermark (offsets commit in the readings' transaction, polled every 100 ms); then sensor_readings is counted and must hold exactly rows = messages; leases are dealt to whichever worker polls, worker_cpu_seconds_each shows how they spread",
		"cpu_seconds: CPU time (user + system, /proc/<pid>/stat, in 1/100 s) in the timed part, the difference of a reading before and after: worker = every worker process; postgres = the postmaster's tree including its reaped children (the backends and background workers alive at each reading, and those that exited and were reaped in between; other databases' activity on the same server counts too); temporal = the dev server process; bench = this process's own threads (kfake serving the fetches, the pollers, the client)",
		"cpu_us_per_row = cpu_seconds x 1e6 / rows, per component and in total: the CPU a row costs, independent of the cores; a deployment with C cores for a component handles at most C x 1e6 / cpu_us_per_row of it rows per second",
		"cores_busy = total cpu_seconds / seconds; other_cpu_seconds = the machine's busy time (/proc/stat) in the timed part less the measured components: the kernel, MariaDB and whatever else ran on the shared machine",
	}
}

func printTable(w io.Writer, f Figures) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pipeline\tworkers\trows\tseconds\trows/s\tvs 1\tcores busy\tCPU s worker\tpostgres\ttemporal\tbench\tother\tus/row worker\tpostgres\ttemporal\tbench\ttotal\t")
	row := func(name string, p Pipeline) {
		var base float64
		for _, r := range p.Runs {
			if r.Workers == 1 {
				base = r.RowsPerS
			}
		}
		for _, r := range p.Runs {
			ratio := ""
			if base > 0 {
				ratio = fmt.Sprintf("%.2fx", r.RowsPerS/base)
			}
			c, u := r.CPUSeconds, r.CPUusPerRow
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.0f\t%s\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n",
				name, r.Workers, r.Rows, r.Seconds, r.RowsPerS, ratio, r.CoresBusy,
				c.Worker, c.Postgres, c.Temporal, c.Bench, r.OtherCPUSeconds, u.Worker, u.Postgres, u.Temporal, u.Bench, u.Total)
		}
	}
	if f.Batch != nil {
		row("batch", f.Batch.Pipeline)
	}
	if f.Stream != nil {
		row("stream", f.Stream.Pipeline)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d cores: the ratio of 2 workers over 1 is bounded by the cores the other components leave free; per-row CPU projects to more machines\n", f.Cores)
}
