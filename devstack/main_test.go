package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// devstackBin is the command built once for the tests that run it as a
// real process, the way the Makefile does.
var devstackBin string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "devstack-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	devstackBin = filepath.Join(tmp, "devstack")
	build := exec.Command("go", "build", "-o", devstackBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build devstack: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freeAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

// stateDir is a fresh --dir. Its parents are opened up because the
// throwaway PostgreSQL runs as an unprivileged user when the tests run as
// root, and t.TempDir's directories are private to the owner.
func stateDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(d, "state")
}

// testConfig is the default configuration with vars on top, without the
// process environment or a .env file.
func testConfig(t *testing.T, vars map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.LoadFrom(context.Background(), envconfig.MapLookuper(vars))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// devstack runs the built command with vars added to the environment, in
// an empty working directory so no .env file is read.
func devstack(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, devstackBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = os.Environ()
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// killLeftovers kills whatever a failed test left running from dir's pid
// files, so no process outlives the tests.
func killLeftovers(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			t.Logf("killing leftover %s (pid %d)", filepath.Base(f), pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// columns splits output lines into their columns, which the table
// separates by two or more spaces.
func columns(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1))
	}
	return rows
}

var (
	pidRe     = regexp.MustCompile(`pid \d+`)
	versionRe = regexp.MustCompile(`(PostgreSQL|MariaDB|MySQL) [0-9.]+`)
)

// normalise hides what differs between runs: pids and server versions.
func normalise(out string) string {
	out = pidRe.ReplaceAllString(out, "pid N")
	return versionRe.ReplaceAllString(out, "$1 V")
}

func isExitError(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}
