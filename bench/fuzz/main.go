// Command fuzz fuzzes the message decoder (FuzzDecode of
// internal/domain/reading) for -fuzztime with `go test -fuzz`, passing its
// output through, and writes bench/results/fuzz.json: the executions and
// the corpus growth from the fuzzer's last status line ("fuzz: elapsed: …,
// execs: N (…/sec), new interesting: M (total: K)"), and the findings: the
// files the run added under testdata/fuzz/FuzzDecode, where the fuzzer
// writes every failing input. A finding fails the command, as it fails
// `go test`; the results file is written first.
//
// Run it from the repository root (`make fuzz`):
//
//	go run ./bench/fuzz [-fuzztime 10m] [-parallel 0]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
)

const (
	target = "FuzzDecode"
	pkg    = "./internal/domain/reading/"
)

// corpusDir is where the fuzzer writes a failing input.
var corpusDir = filepath.Join("internal", "domain", "reading", "testdata", "fuzz", target)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/fuzz:", err)
		os.Exit(1)
	}
}

// Figures are what fuzz.json records.
type Figures struct {
	Target    string  `json:"target"`
	Package   string  `json:"package"`
	FuzzTimeS float64 `json:"fuzztime_s"`
	Workers   int     `json:"workers"` // the fuzzer's worker processes
	// From the fuzzer's last status line: its elapsed time, executions,
	// the rate over its last interval, the inputs that widened coverage in
	// this run, and the corpus it fuzzes: BaselineCorpus (the seeds and the
	// cached corpus of earlier runs) plus NewInteresting.
	ElapsedS         float64  `json:"elapsed_s"`
	Execs            int64    `json:"execs"`
	ExecsPerS        float64  `json:"execs_per_s"` // execs / elapsed_s
	LastIntervalPerS int64    `json:"last_interval_execs_per_s"`
	NewInteresting   int64    `json:"new_interesting"`
	CorpusTotal      int64    `json:"corpus_total"`
	BaselineCorpus   int64    `json:"baseline_corpus"`
	Findings         int      `json:"findings"`
	FindingFiles     []string `json:"finding_files"`
	Passed           bool     `json:"passed"`
	WallS            float64  `json:"wall_s"` // go test as a whole, the build included
	StatusLineFound  bool     `json:"status_line_found"`
}

var (
	statusLine   = regexp.MustCompile(`fuzz: elapsed: (\S+), execs: (\d+) \((\d+)/sec\), new interesting: (\d+) \(total: (\d+)\)`)
	baselineLine = regexp.MustCompile(`gathering baseline coverage: \d+/(\d+) completed, now fuzzing with (\d+) workers`)
)

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench/fuzz", flag.ContinueOnError)
	fuzzTime := fs.Duration("fuzztime", 10*time.Minute, "how long to fuzz")
	parallel := fs.Int("parallel", 0, "fuzzer worker processes; 0 is go test's default (GOMAXPROCS)")
	out := fs.String("out", "bench/results/fuzz.json", "results file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *fuzzTime <= 0 || *parallel < 0 {
		return errors.New("-fuzztime must be positive and -parallel at least 0")
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return fmt.Errorf("run it from the repository root: %w", err)
	}
	before, err := corpusFiles()
	if err != nil {
		return err
	}

	testArgs := []string{"test", "-run", "^$", "-fuzz", "^" + target + "$", "-fuzztime", fuzzTime.String()}
	if *parallel > 0 {
		testArgs = append(testArgs, "-parallel", strconv.Itoa(*parallel))
	}
	testArgs = append(testArgs, pkg)
	fmt.Fprintln(os.Stderr, "go", strings.Join(testArgs, " "))
	var output bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", testArgs...)
	cmd.Stdout = io.MultiWriter(os.Stdout, &output)
	cmd.Stderr = io.MultiWriter(os.Stderr, &output)
	began := time.Now()
	testErr := cmd.Run()
	wall := time.Since(began)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var exitErr *exec.ExitError
	if testErr != nil && !errors.As(testErr, &exitErr) {
		return fmt.Errorf("go test: %w", testErr)
	}

	after, err := corpusFiles()
	if err != nil {
		return err
	}
	f := Figures{Target: target, Package: pkg, FuzzTimeS: fuzzTime.Seconds(), WallS: math.Round(wall.Seconds()*1000) / 1000, Passed: testErr == nil, FindingFiles: []string{}}
	for _, name := range after {
		if !slices.Contains(before, name) {
			f.FindingFiles = append(f.FindingFiles, filepath.ToSlash(filepath.Join(corpusDir, name)))
		}
	}
	f.Findings = len(f.FindingFiles)
	parseOutput(output.String(), &f)

	res := benchutil.Result{
		Benchmark: "fuzz",
		RanAt:     time.Now().UTC(),
		Machine:   benchutil.Describe(ctx, nil),
		Figures:   f,
		Notes: []string{
			fmt.Sprintf("go test -run '^$' -fuzz '^%s$' -fuzztime %s %s; the figures are from the fuzzer's last status line", target, fuzzTime, pkg),
			"execs_per_s is execs / elapsed_s; last_interval_execs_per_s is the rate the status line itself shows, over its last interval (about 3 s)",
			"the fuzzer counts a worker's executions when the worker reports back: while workers minimize a new interesting input (up to -fuzzminimizetime, 60 s by default) the status line shows 0/sec and the count then jumps; executions of a minimization still running when -fuzztime ends are not counted, so execs is a lower bound",
			"new_interesting: inputs that widened coverage in this run (kept in the Go build cache, not in the repository); corpus_total = baseline_corpus (the seeds and the cached corpus of earlier runs) + new_interesting",
			fmt.Sprintf("findings: files the run added under %s, where the fuzzer writes each failing input; a finding fails the run", filepath.ToSlash(corpusDir)),
		},
	}
	if err := benchutil.Write(*out, res); err != nil {
		return err
	}
	fmt.Printf("fuzz %s: %d execs in %.0f s (%.0f/s, %d workers), %d new interesting (corpus %d), %d findings, passed %v; written to %s\n",
		target, f.Execs, f.ElapsedS, f.ExecsPerS, f.Workers, f.NewInteresting, f.CorpusTotal, f.Findings, f.Passed, *out)
	switch {
	case !f.Passed:
		return fmt.Errorf("%s failed; findings: %s", target, strings.Join(f.FindingFiles, ", "))
	case !f.StatusLineFound:
		return errors.New("the fuzzer printed no status line")
	}
	return nil
}

// parseOutput reads the fuzzer's last status line and its worker count.
func parseOutput(out string, f *Figures) {
	if m := baselineLine.FindAllStringSubmatch(out, -1); len(m) > 0 {
		last := m[len(m)-1]
		f.BaselineCorpus, _ = strconv.ParseInt(last[1], 10, 64)
		f.Workers, _ = strconv.Atoi(last[2])
	}
	m := statusLine.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return
	}
	last := m[len(m)-1]
	f.StatusLineFound = true
	elapsed, _ := time.ParseDuration(last[1])
	n := make([]int64, len(last)-2)
	for i, s := range last[2:] {
		n[i], _ = strconv.ParseInt(s, 10, 64)
	}
	f.ElapsedS, f.Execs, f.LastIntervalPerS, f.NewInteresting, f.CorpusTotal = elapsed.Seconds(), n[0], n[1], n[2], n[3]
	if f.ElapsedS > 0 {
		f.ExecsPerS = math.Round(float64(f.Execs)/f.ElapsedS*10) / 10
	}
}

// corpusFiles lists the files of the target's corpus directory in the
// repository (none when it does not exist).
func corpusFiles() ([]string, error) {
	entries, err := os.ReadDir(corpusDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
