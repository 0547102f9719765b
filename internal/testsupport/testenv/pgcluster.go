package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// PGOptions configure a throwaway PostgreSQL cluster.
type PGOptions struct {
	// Certs turns TLS on (ssl=on) with the server certificate; the test CA
	// also verifies client certificates. Nil: no TLS.
	Certs *Certs
	// Auth is the pg_hba method of TCP connections: trust (the default),
	// scram-sha-256, md5 or password.
	Auth string
	// HostSSLOnly accepts TCP connections over TLS only (hostssl lines, no
	// host lines). It needs Certs.
	HostSSLOnly bool
	// SuperuserPassword is the password of the superuser postgres;
	// required unless Auth is trust.
	SuperuserPassword string
}

// PGCluster is a PostgreSQL server of one test, on a free port of
// 127.0.0.1 with a data directory of its own. It is stopped and its files
// removed when the test ends.
type PGCluster struct {
	Host      string
	Port      int
	Superuser string

	t       testing.TB
	opts    PGOptions
	dir     string // holds data/ and the server log
	data    string
	bin     string
	cred    *syscall.Credential
	proc    *serverProc
	logPath string
}

// StartPGCluster initialises and starts a cluster. It skips the test
// locally (fails in CI) when the PostgreSQL server binaries are missing.
func StartPGCluster(t testing.TB, opts PGOptions) *PGCluster {
	t.Helper()
	Integration(t)
	if opts.Auth == "" {
		opts.Auth = "trust"
	}
	if opts.Auth != "trust" && opts.SuperuserPassword == "" {
		t.Fatalf("PGOptions: auth %s needs a SuperuserPassword", opts.Auth)
	}
	if opts.HostSSLOnly && opts.Certs == nil {
		t.Fatal("PGOptions: HostSSLOnly needs Certs")
	}
	initdb, postgres, err := postgresBinaries()
	if err != nil {
		Unavailable(t, "PostgreSQL server binaries", err)
	}
	c := &PGCluster{Host: "127.0.0.1", Superuser: "postgres", t: t, opts: opts, bin: postgres}
	if c.cred, err = serverCredential(); err != nil {
		Unavailable(t, "a user to run PostgreSQL as", err)
	}
	c.dir = serverDir(t, "iotetl-pg-*", c.cred)
	c.data = filepath.Join(c.dir, "data")
	c.logPath = filepath.Join(c.dir, "postgres.log")
	t.Cleanup(func() {
		if c.proc != nil {
			_ = c.proc.stop(syscall.SIGINT, 30*time.Second)
		}
		if t.Failed() {
			t.Logf("--- PostgreSQL log (%s) ---\n%s", c.logPath, tail(c.logPath, 40))
		}
		os.RemoveAll(c.dir)
	})
	if c.Port, err = FreePort(); err != nil {
		t.Fatal(err)
	}

	args := []string{"-D", c.data, "-U", c.Superuser, "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"}
	if opts.SuperuserPassword != "" {
		pwfile := filepath.Join(c.dir, "pwfile")
		c.writeOwned(pwfile, []byte(opts.SuperuserPassword+"\n"))
		args = append(args, "--pwfile="+pwfile)
		defer os.Remove(pwfile)
	}
	cmd := exec.Command(initdb, args...)
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.writeOwned(filepath.Join(c.data, "pg_hba.conf"), []byte(c.hba()))
	if opts.Certs != nil {
		// The server reads its key only when its own user owns it with
		// mode 0600, so it gets copies in its data directory.
		for src, dst := range map[string]string{opts.Certs.ServerCert: "server.crt", opts.Certs.ServerKey: "server.key", opts.Certs.CA: "root.crt"} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			c.writeOwned(filepath.Join(c.data, dst), b)
		}
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// hba is the pg_hba.conf of the options: TCP on loopback only.
func (c *PGCluster) hba() string {
	kind := "host"
	if c.opts.HostSSLOnly {
		kind = "hostssl"
	}
	method := c.opts.Auth
	var b strings.Builder
	for _, addr := range []string{"127.0.0.1/32", "::1/128"} {
		fmt.Fprintf(&b, "%-8s all all %-13s %s\n", kind, addr, method)
	}
	return b.String()
}

// writeOwned writes a 0600 file owned by the server's user.
func (c *PGCluster) writeOwned(path string, b []byte) {
	c.t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		c.t.Fatal(err)
	}
	if c.cred != nil {
		if err := os.Chown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			c.t.Fatal(err)
		}
	}
}

// Start starts the server (again, after Stop) on the same port and data
// directory and waits until it accepts the superuser.
func (c *PGCluster) Start() error {
	if c.proc != nil && !c.proc.exited() {
		return errors.New("postgres: already running")
	}
	args := []string{"-D", c.data, "-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=" + c.Host,
		"-c", "unix_socket_directories=",
		"-c", "logging_collector=off",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=60",
		"-c", "password_encryption=scram-sha-256",
	}
	if c.opts.Certs != nil {
		args = append(args, "-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key", "-c", "ssl_ca_file=root.crt")
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	p, err := startServer(cmd, c.logPath, c.cred)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.proc = p
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := c.Admin()
	var last error
	for ctx.Err() == nil {
		if p.exited() {
			return fmt.Errorf("postgres exited at start: %w\n%s", p.err, tail(c.logPath, 20))
		}
		conn, err := pgx.Connect(ctx, admin.URL())
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("postgres did not accept connections within 60s: %w", last)
}

// Stop shuts the server down (fast shutdown: clients are disconnected)
// and waits for it to exit.
func (c *PGCluster) Stop() error {
	if c.proc == nil {
		return nil
	}
	return c.proc.stop(syscall.SIGINT, 30*time.Second)
}

// Crash is `pg_ctl stop -m immediate`: the server quits without a
// checkpoint, as after a power loss of the database alone, and the next
// Start runs crash recovery (which, among other things, empties every
// UNLOGGED table).
func (c *PGCluster) Crash() error {
	if c.proc == nil || c.proc.exited() {
		return errors.New("postgres: not running")
	}
	cmd := exec.Command(filepath.Join(filepath.Dir(c.bin), "pg_ctl"), "stop", "-D", c.data, "-m", "immediate", "-w")
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop -m immediate: %w\n%s", err, out)
	}
	select {
	case <-c.proc.done:
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("postgres still running 30s after pg_ctl stop -m immediate")
	}
}

// Addr is host:port.
func (c *PGCluster) Addr() string { return fmt.Sprintf("%s:%d", c.Host, c.Port) }

// Config is how user connects to database: over verified TLS
// (verify-full with the test CA) when the cluster has certificates, else
// without TLS.
func (c *PGCluster) Config(user, password, database string) config.Postgres {
	p := config.Postgres{Host: c.Host, Port: c.Port, User: user, Password: config.Secret(password), Database: database, SSLMode: "disable"}
	if c.opts.Certs != nil {
		p.SSLMode, p.SSLRootCert = "verify-full", c.opts.Certs.CA
	}
	return p
}

// Admin is the superuser's connection to the postgres database.
func (c *PGCluster) Admin() config.Postgres {
	return c.Config(c.Superuser, c.opts.SuperuserPassword, "postgres")
}

// Exec runs statements as the superuser, failing the test on an error.
func (c *PGCluster) Exec(t testing.TB, statements ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.Admin().URL())
	if err != nil {
		t.Fatalf("connect to the throwaway PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// CreateRole creates a login role with a password, allowed to create
// databases (as `starter migrate` does).
func (c *PGCluster) CreateRole(t testing.TB, name, password string) {
	t.Helper()
	c.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD %s",
		pgx.Identifier{name}.Sanitize(), quoteLiteral(password)))
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// postgresBinaries finds initdb and postgres of one installation: on
// PATH, else the newest under the distributions' directories.
func postgresBinaries() (initdb, postgres string, err error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(resolved))
		}
	}
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"} {
		m, _ := filepath.Glob(pattern)
		sort.Sort(sort.Reverse(sort.StringSlice(m)))
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		i, p := filepath.Join(d, "initdb"), filepath.Join(d, "postgres")
		if isFile(i) && isFile(p) {
			return i, p, nil
		}
	}
	return "", "", errors.New("initdb and postgres not found (Debian/Ubuntu: apt-get install postgresql)")
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// serverCredential is the user PostgreSQL runs as when the tests run as
// root (it refuses root), or nil.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and there is no postgres or nobody user")
}

// serverDir creates a directory for a server's files that the server's
// user owns. As root it lives under /var/tmp: the test's own temporary
// directories are 0700 and the server's user could not enter them.
func serverDir(t testing.TB, pattern string, cred *syscall.Credential) string {
	t.Helper()
	base := ""
	if cred != nil {
		base = "/var/tmp"
	}
	dir, err := os.MkdirTemp(base, pattern)
	if err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// serverProc is a database server started by a fixture.
type serverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startServer starts cmd with its output appended to logPath, as cred
// when not nil, in a process group of its own that dies with the test.
func startServer(cmd *exec.Cmd, logPath string, cred *syscall.Credential) (*serverProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &serverProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *serverProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to timeout, then kills the process group.
func (p *serverProc) stop(sig syscall.Signal, timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s", filepath.Base(p.cmd.Path), timeout)
	}
}
