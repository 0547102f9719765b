package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// silentListener accepts TCP connections on a free port and never says a
// word, like a program that is not the expected service.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func testStack(t *testing.T, cfg *config.Config) *stack {
	t.Helper()
	s, err := newStack(cfg, stateDir(t))
	if err != nil {
		t.Fatal(err)
	}
	s.probeTimeout = time.Second
	return s
}

func componentNamed(t *testing.T, s *stack, name string) component {
	t.Helper()
	for _, c := range s.comps {
		if c.Name() == name {
			return c
		}
	}
	t.Fatalf("no component %s", name)
	return nil
}

func TestUpRefusesPortTakenByAnotherProgram(t *testing.T) {
	testenv.Integration(t) // real processes
	t.Parallel()
	tests := []struct {
		name      string
		component string
		vars      func(taken string) map[string]string
		want      string
	}{
		{
			name: "kafka", component: "kafka",
			vars: func(taken string) map[string]string { return map[string]string{"KAFKA_BOOTSTRAP_SERVERS": taken} },
			want: "%s is in use by another program that does not answer as Kafka (stop it or set KAFKA_BOOTSTRAP_SERVERS)",
		},
		{
			name: "temporal frontend", component: "temporal",
			vars: func(taken string) map[string]string { return map[string]string{"TEMPORAL_ADDRESS": taken} },
			want: "%s is in use by another program that does not answer as Temporal (stop it or set TEMPORAL_ADDRESS)",
		},
		{
			name: "temporal ui", component: "temporal",
			vars: func(taken string) map[string]string {
				return map[string]string{"TEMPORAL_ADDRESS": freeAddr(t), "TEMPORAL_UI_URL": "http://" + taken}
			},
			want: "%s is in use by another program that does not answer as the Temporal UI (stop it or set TEMPORAL_UI_URL)",
		},
		{
			name: "postgres", component: "postgres",
			vars: func(taken string) map[string]string {
				_, port, _ := net.SplitHostPort(taken)
				return map[string]string{"POSTGRES_PORT": port, "TIMESCALE_PORT": port}
			},
			want: "%s is in use by another program that does not answer as PostgreSQL (stop it or set POSTGRES_HOST/POSTGRES_PORT)",
		},
		{
			name: "mysql", component: "mysql",
			vars: func(taken string) map[string]string {
				_, port, _ := net.SplitHostPort(taken)
				return map[string]string{"MYSQL_PORT": port}
			},
			want: "%s is in use by another program that does not answer as MySQL/MariaDB (stop it or set MYSQL_HOST/MYSQL_PORT)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			taken := silentListener(t)
			s := testStack(t, testConfig(t, tt.vars(taken)))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := s.ensure(ctx, componentNamed(t, s, tt.component))
			if r.err == nil {
				t.Fatalf("ensure %s succeeded against a silent listener", tt.component)
			}
			if diff := cmp.Diff(fmt.Sprintf(tt.want, taken), r.err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if pids, _ := filepath.Glob(s.path("pids", "*")); len(pids) != 0 {
				t.Errorf("pid files after a refused start: %v", pids)
			}
		})
	}
}

func TestUpSaysWhatToInstallWhenNothingCanStart(t *testing.T) {
	testenv.Integration(t) // real processes
	t.Parallel()
	notFound := func(string) (string, bool) { return "", false }
	tests := []struct {
		component string
		disable   func(c component)
		want      string
	}{
		{
			component: "postgres",
			disable:   func(c component) { c.(*postgresComponent).find = notFound },
			want:      "nothing answers at %[1]s, and no PostgreSQL server binaries (initdb, postgres) were found to start a throwaway server under %[2]s/postgres: install them (Debian/Ubuntu: apt-get install postgresql) or point POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER and POSTGRES_PASSWORD at a running server",
		},
		{
			component: "mysql",
			disable:   func(c component) { c.(*mysqlComponent).find = notFound },
			want:      "nothing answers at %[1]s, and no MariaDB or MySQL server binaries (mariadbd or mysqld) were found to start a throwaway server under %[2]s/mysql: install them (Debian/Ubuntu: apt-get install mariadb-server) or point MYSQL_HOST, MYSQL_PORT, MYSQL_USER and MYSQL_PASSWORD at a running server",
		},
		{
			component: "temporal",
			disable: func(c component) {
				c.(*temporalComponent).binary = func() (string, error) { return "", errors.New("not on PATH") }
			},
			want: "nothing answers at %[1]s and the temporal CLI that would start a dev server was not found: run `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` (or `make tools`)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.component, func(t *testing.T) {
			t.Parallel()
			port := strconv.Itoa(freePort(t))
			cfg := testConfig(t, map[string]string{
				"POSTGRES_PORT": port, "TIMESCALE_PORT": port, "MYSQL_PORT": port,
				"TEMPORAL_ADDRESS": "127.0.0.1:" + port, "TEMPORAL_UI_URL": "http://" + freeAddr(t),
			})
			s := testStack(t, cfg)
			c := componentNamed(t, s, tt.component)
			tt.disable(c)
			r := s.ensure(context.Background(), c)
			if r.err == nil {
				t.Fatal("ensure succeeded without a way to start the server")
			}
			if diff := cmp.Diff(fmt.Sprintf(tt.want, c.Addr(), s.dir), r.err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPostgresAsRootNeedsAnEnterableDir(t *testing.T) {
	testenv.Integration(t) // real processes
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root hands PostgreSQL to another user")
	}
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, map[string]string{"POSTGRES_PORT": strconv.Itoa(freePort(t))})
	s, err := newStack(cfg, filepath.Join(private, "state"))
	if err != nil {
		t.Fatal(err)
	}
	p := componentNamed(t, s, "postgres").(*postgresComponent)
	if _, _, ok := p.binaries(); !ok {
		testenv.Unavailable(t, "PostgreSQL server binaries", errors.New("initdb not found"))
	}
	_, err = p.Command(context.Background(), nil)
	want := fmt.Sprintf("PostgreSQL refuses to run as root, and user postgres, which devstack runs it as, cannot enter %s: use a --dir whose parents others may enter (such as under /var/tmp), or run devstack as a normal user", private)
	if err == nil || err.Error() != want {
		t.Errorf("Command error = %v\nwant %s", err, want)
	}
}

// TestUpIsIdempotentAndDownStopsWhatItStarted runs the command as the
// Makefile does, with every service on free ports, so devstack starts all
// of them: the Temporal dev server, the kfake broker and throwaway
// PostgreSQL and MariaDB servers.
func TestUpIsIdempotentAndDownStopsWhatItStarted(t *testing.T) {
	testenv.Integration(t) // real processes
	t.Parallel()
	if _, err := temporalx.Binary(); err != nil {
		testenv.Unavailable(t, "temporal CLI", err)
	}
	if _, ok := findBinary("initdb", postgresDirs...); !ok {
		testenv.Unavailable(t, "PostgreSQL server binaries", errors.New("initdb not found"))
	}
	if _, ok := findBinary("mariadbd", mysqlDirs...); !ok {
		testenv.Unavailable(t, "MariaDB server binaries", errors.New("mariadbd not found"))
	}
	dir := stateDir(t)
	pgPort, myPort := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	temporalAddr, uiAddr, kafkaAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	vars := map[string]string{
		"TEMPORAL_ADDRESS": temporalAddr, "TEMPORAL_UI_URL": "http://" + uiAddr,
		"KAFKA_BOOTSTRAP_SERVERS": kafkaAddr, "KAFKA_TOPIC": "readings-up", "KAFKA_PARTITIONS": "3",
		"POSTGRES_PORT": pgPort, "TIMESCALE_PORT": pgPort, "POSTGRES_USER": "iot_admin", "TIMESCALE_USER": "iot_admin",
		"MYSQL_PORT": myPort, "MYSQL_USER": "iot", "MYSQL_PASSWORD": "s3cret",
	}
	t.Cleanup(func() {
		if out, errOut, err := devstack(t, vars, "--dir", dir, "down"); err != nil {
			t.Logf("cleanup down: %v\n%s%s", err, out, errOut)
		}
		killLeftovers(t, dir)
	})
	log := func(name string) string { return "log " + filepath.Join(dir, "logs", name+".log") }
	pg, my := "127.0.0.1:"+pgPort, "127.0.0.1:"+myPort
	upLines := func(how string) [][]string {
		return [][]string{
			{"postgres", pg, "up", "managed", how + " (pid N), PostgreSQL V, " + log("postgres")},
			{"mysql", my, "up", "managed", how + " (pid N), MariaDB V, " + log("mysql")},
			{"kafka", kafkaAddr, "up", "managed", how + " (pid N), topic readings-up (3 partitions), " + log("kafka")},
			{"temporal", temporalAddr, "up", "managed", how + " (pid N), ui http://" + uiAddr + ", " + log("temporal")},
		}
	}
	downLines := [][]string{
		{"postgres", pg, "down", "managed", "stopped (pid N)"},
		{"mysql", my, "down", "managed", "stopped (pid N)"},
		{"kafka", kafkaAddr, "down", "managed", "stopped (pid N)"},
		{"temporal", temporalAddr, "down", "managed", "stopped (pid N)"},
	}
	run := func(t *testing.T, want [][]string, args ...string) {
		t.Helper()
		out, errOut, err := devstack(t, vars, append([]string{"--dir", dir}, args...)...)
		if err != nil {
			t.Fatalf("devstack %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
		}
		if diff := cmp.Diff(want, columns(normalise(out))); diff != "" {
			t.Fatalf("devstack %s output (-want +got):\n%s\nraw:\n%s", strings.Join(args, " "), diff, out)
		}
	}

	run(t, upLines("started"), "up")
	pids := readPids(t, dir)
	if len(pids) != 4 {
		t.Fatalf("pid files after up: %v, want 4", pids)
	}
	run(t, upLines("already running"), "up")
	if diff := cmp.Diff(pids, readPids(t, dir)); diff != "" {
		t.Fatalf("pids changed by the second up (-want +got):\n%s", diff)
	}
	run(t, [][]string{
		{"postgres", pg, "up", "managed", "pid N, PostgreSQL V, " + log("postgres")},
		{"mysql", my, "up", "managed", "pid N, MariaDB V, " + log("mysql")},
		{"kafka", kafkaAddr, "up", "managed", "pid N, topic readings-up (3 partitions), " + log("kafka")},
		{"temporal", temporalAddr, "up", "managed", "pid N, ui http://" + uiAddr + ", " + log("temporal")},
	}, "status")
	checkServices(t, vars)
	produced := produce(t, kafkaAddr, "readings-up", 10)
	startParkedWorkflow(t, temporalAddr)

	run(t, downLines, "down")
	if left := readPids(t, dir); len(left) != 0 {
		t.Errorf("pid files after down: %v", left)
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still running after down", name, pid)
		}
	}
	for _, addr := range []string{pg, my, kafkaAddr, temporalAddr, uiAddr} {
		if listening(context.Background(), addr) {
			t.Errorf("%s still accepts connections after down", addr)
		}
	}
	run(t, [][]string{
		{"postgres", pg, "down", "-", "not running"},
		{"mysql", my, "down", "-", "not running"},
		{"kafka", kafkaAddr, "down", "-", "not running"},
		{"temporal", temporalAddr, "down", "-", "not running"},
	}, "status")

	// A second round starts from the state the first one left, with two
	// `up`s at once: one starts the services, the other finds them.
	outs := make([]string, 2)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() {
			out, errOut, err := devstack(t, vars, "--dir", dir, "up")
			if err != nil {
				t.Errorf("concurrent up: %v\n%s%s", err, out, errOut)
			}
			outs[i] = normalise(out)
		})
	}
	wg.Wait()
	if strings.Contains(outs[0], "already running") {
		outs[0], outs[1] = outs[1], outs[0]
	}
	if diff := cmp.Diff([][][]string{upLines("started"), upLines("already running")}, [][][]string{columns(outs[0]), columns(outs[1])}); diff != "" {
		t.Fatalf("concurrent ups (-want +got):\n%s", diff)
	}
	if n := len(readPids(t, dir)); n != 4 {
		t.Fatalf("pid files after concurrent ups: %d, want 4", n)
	}
	checkServices(t, vars)
	// State survived the restart.
	if diff := cmp.Diff(produced, consumeAll(t, kafkaAddr, "readings-up", 10)); diff != "" {
		t.Errorf("records after down and up (-want +got):\n%s", diff)
	}
	checkParkedWorkflow(t, temporalAddr)
	run(t, downLines, "down")
}

const parkedWorkflowID = "devstack-persistence-check"

// startParkedWorkflow starts a workflow no worker polls for, so it stays
// running in the dev server's database.
func startParkedWorkflow(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: addr, Logger: temporalx.Silent})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := client.StartWorkflowOptions{ID: parkedWorkflowID, TaskQueue: "devstack-no-worker"}
	if _, err := c.ExecuteWorkflow(ctx, opts, "NoWorkerRunsThis"); err != nil {
		t.Fatal(err)
	}
}

func checkParkedWorkflow(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: addr, Logger: temporalx.Silent})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.DescribeWorkflow(ctx, parkedWorkflowID, "")
	if err != nil {
		t.Fatalf("workflow started before down: %v", err)
	}
	if got := d.Status.String(); got != "Running" {
		t.Errorf("workflow started before down: status %s, want Running", got)
	}
}

// readPids maps component names to the pids in dir's pid files.
func readPids(t *testing.T, dir string) map[string]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	return pids
}

// checkServices uses each service the way the pipeline will: logs in with
// the configured users, lists the topic, reads the search attributes.
func checkServices(t *testing.T, vars map[string]string) {
	t.Helper()
	cfg := testConfig(t, vars)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ping(ctx, cfg.MySQL); err != nil {
		t.Errorf("mysql login as %s: %v", cfg.MySQL.User, err)
	}
	s := &stack{cfg: cfg}
	if err := newPostgres(s, "postgres", "POSTGRES", cfg.Postgres).Probe(ctx); err != nil {
		t.Errorf("postgres login as %s: %v", cfg.Postgres.User, err)
	}
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(cfg.Kafka.BootstrapServers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if n, err := topicPartitions(ctx, adm, cfg.Kafka.Topic); err != nil || n != cfg.Kafka.Partitions {
		t.Errorf("topic %s: %d partitions (err %v), want %d", cfg.Kafka.Topic, n, err, cfg.Kafka.Partitions)
	}
	c, err := client.DialContext(ctx, client.Options{HostPort: cfg.Temporal.Address, Logger: temporalx.Silent})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	for name, typ := range temporalx.SearchAttributes {
		if got := resp.GetCustomAttributes()[name]; got != typ {
			t.Errorf("search attribute %s: %v, want %v", name, got, typ)
		}
	}
}

// TestUpUsesExternalServices points devstack at a Temporal server and a
// Kafka broker it did not start: it leaves them running as they are and
// only adds what the pipeline needs, the search attributes and the topic.
func TestUpUsesExternalServices(t *testing.T) {
	testenv.Integration(t) // real processes
	t.Parallel()
	bin, err := temporalx.Binary()
	if err != nil {
		testenv.Unavailable(t, "temporal CLI", err)
	}
	temporalAddr := freeAddr(t)
	_, port, _ := net.SplitHostPort(temporalAddr)
	// A bare server: headless and without the project's search attributes.
	srv := exec.Command(bin, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", port, "--log-level", "error")
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
		_ = srv.Wait()
	})
	_, brokers := testenv.Kafka(t, "some-other-topic", 1)

	uiAddr := freeAddr(t)
	cfg := testConfig(t, map[string]string{
		"TEMPORAL_ADDRESS": temporalAddr, "TEMPORAL_UI_URL": "http://" + uiAddr,
		"KAFKA_BOOTSTRAP_SERVERS": brokers[0], "KAFKA_TOPIC": "readings-external", "KAFKA_PARTITIONS": "5",
	})
	s := testStack(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitFor(t, ctx, componentNamed(t, s, "temporal"))

	var got []report
	for _, name := range []string{"kafka", "temporal"} {
		r := s.ensure(ctx, componentNamed(t, s, name))
		if r.err != nil {
			t.Fatalf("ensure %s: %v", name, r.err)
		}
		got = append(got, r)
	}
	want := []report{
		{name: "kafka", addr: brokers[0], state: "up", owner: "external", detail: "already running, topic readings-external (5 partitions)"},
		{name: "temporal", addr: temporalAddr, state: "up", owner: "external",
			detail: "already running, ui http://" + uiAddr + " not answering (Get \"http://" + uiAddr + "\": dial tcp " + uiAddr + ": connect: connection refused)"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(report{})); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	checkServices(t, map[string]string{
		"TEMPORAL_ADDRESS": temporalAddr, "KAFKA_BOOTSTRAP_SERVERS": brokers[0],
		"KAFKA_TOPIC": "readings-external", "KAFKA_PARTITIONS": "5",
	})
	if pids, _ := filepath.Glob(s.path("pids", "*")); len(pids) != 0 {
		t.Errorf("pid files for external services: %v", pids)
	}
}

// waitFor waits until c answers; an external server may still be starting.
func waitFor(t *testing.T, ctx context.Context, c component) {
	t.Helper()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.Probe(pctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s at %s did not answer: %v", c.Name(), c.Addr(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
