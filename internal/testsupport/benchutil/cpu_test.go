package benchutil

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		want ProcCPU
	}{
		{"plain", "42 (worker) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 12 0 1000 0 0",
			ProcCPU{PPID: 7, Self: 3, Reaped: 0.5}},
		{"name with spaces and parentheses", "43 (a (b) c) R 1 43 43 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 0 0",
			ProcCPU{PPID: 1, Self: 0.03, Reaped: 0.07}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStat([]byte(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseStat (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := parseStat([]byte("44 (short) S 1 2")); err == nil {
		t.Error("a truncated line parsed")
	}
}

// TestProcessCPU burns CPU in a shell: first in a subshell, which the shell
// reaps, then in the shell itself, which then waits on its stdin so that it
// can be measured alive.
func TestProcessCPU(t *testing.T) {
	const burn = `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`
	sh := exec.Command("sh", "-c", "("+burn+"); "+burn+"; echo burnt; read _")
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = sh.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "burnt\n" {
		t.Fatalf("the shell said %q, %v", line, err)
	}
	wall := time.Since(began).Seconds()

	c, err := ReadProcCPU(sh.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if c.PPID != os.Getpid() {
		t.Errorf("ppid %d, want this test's pid %d", c.PPID, os.Getpid())
	}
	if c.Self <= 0 || c.Reaped <= 0 {
		t.Errorf("CPU of the shell %.2f s and of its reaped subshell %.2f s, want both > 0", c.Self, c.Reaped)
	}
	if limit := wall * float64(runtime.NumCPU()); c.Total() > limit {
		t.Errorf("CPU %.2f s in %.2f s of wall time on %d cores", c.Total(), wall, runtime.NumCPU())
	}

	self, err := ReadProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Read last: every figure only grows.
	tree, err := TreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree < self.Total()+c.Total() {
		t.Errorf("tree %.2f s < this process %.2f s + the shell %.2f s", tree, self.Total(), c.Total())
	}

	busy, err := MachineBusyCPU()
	if err != nil {
		t.Fatal(err)
	}
	if busy < c.Total() {
		t.Errorf("machine busy %.2f s since boot, less than the shell's %.2f s", busy, c.Total())
	}
}
