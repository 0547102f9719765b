package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// MariaDBOptions configure a throwaway MariaDB server.
type MariaDBOptions struct {
	// Certs turns TLS on (--ssl-ca, --ssl-cert, --ssl-key with the test
	// certificates). Nil: no TLS.
	Certs *Certs
	// RootPassword is set on root once the server is up; empty keeps
	// root without a password.
	RootPassword string
}

// MariaDB is a MariaDB server of one test, on a free port of 127.0.0.1
// with a data directory of its own. It is stopped and its files removed
// when the test ends.
type MariaDB struct {
	Host string
	Port int

	t       testing.TB
	opts    MariaDBOptions
	dir     string
	data    string
	server  string
	asRoot  []string
	proc    *serverProc
	logPath string
}

// StartMariaDB initialises and starts a server. It skips the test locally
// (fails in CI) when the MariaDB server binaries are missing.
func StartMariaDB(t testing.TB, opts MariaDBOptions) *MariaDB {
	t.Helper()
	Integration(t)
	server, install, err := mariadbBinaries()
	if err != nil {
		Unavailable(t, "MariaDB server binaries", err)
	}
	m := &MariaDB{Host: "127.0.0.1", t: t, opts: opts, server: server}
	if os.Geteuid() == 0 {
		m.asRoot = []string{"--user=root"}
	}
	m.dir = serverDir(t, "iotetl-mariadb-*", nil)
	m.data = filepath.Join(m.dir, "data")
	m.logPath = filepath.Join(m.dir, "mariadb.log")
	t.Cleanup(func() {
		if m.proc != nil {
			_ = m.proc.stop(syscall.SIGTERM, 30*time.Second)
		}
		if t.Failed() {
			t.Logf("--- MariaDB log (%s) ---\n%s", m.logPath, tail(m.logPath, 40))
		}
		os.RemoveAll(m.dir)
	})
	if m.Port, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(install, append([]string{"--no-defaults", "--datadir=" + m.data,
		"--auth-root-authentication-method=normal", "--skip-test-db"}, m.asRoot...)...)
	cmd.Dir = m.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	root := m.Root()
	root.Password = ""
	if err := m.start(root); err != nil {
		t.Fatal(err)
	}
	if opts.RootPassword != "" {
		m.Exec(t, root, "ALTER USER 'root'@'localhost' IDENTIFIED BY "+quoteMySQL(opts.RootPassword))
	}
	return m
}

func mariadbBinaries() (server, install string, err error) {
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/mysql/bin"} {
			if p := filepath.Join(d, name); isFile(p) {
				return p
			}
		}
		return ""
	}
	server, install = find("mariadbd"), find("mariadb-install-db")
	if server == "" || install == "" {
		return "", "", errors.New("mariadbd and mariadb-install-db not found (Debian/Ubuntu: apt-get install mariadb-server)")
	}
	return server, install, nil
}

// Start starts the server again after Stop, on the same port and data
// directory, and waits until root can log in.
func (m *MariaDB) Start() error { return m.start(m.Root()) }

func (m *MariaDB) start(root config.MySQL) error {
	if m.proc != nil && !m.proc.exited() {
		return errors.New("mariadb: already running")
	}
	args := append([]string{"--no-defaults", "--datadir=" + m.data}, m.asRoot...)
	args = append(args, "--port="+strconv.Itoa(m.Port), "--bind-address="+m.Host,
		"--socket="+filepath.Join(m.dir, "mariadb.sock"), "--pid-file="+filepath.Join(m.dir, "mariadb.pid"),
		"--skip-log-bin", "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M",
		"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--skip-innodb-adaptive-hash-index",
		"--performance-schema=OFF")
	if c := m.opts.Certs; c != nil {
		args = append(args, "--ssl-ca="+c.CA, "--ssl-cert="+c.ServerCert, "--ssl-key="+c.ServerKey)
	}
	p, err := startServer(exec.Command(m.server, args...), m.logPath, nil)
	if err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	m.proc = p
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		if p.exited() {
			return fmt.Errorf("mariadbd exited at start: %w\n%s", p.err, tail(m.logPath, 20))
		}
		db, err := store.MySQLHandle(root, "")
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("mariadbd did not accept root within 60s: %w", last)
}

// Stop shuts the server down and waits for it to exit.
func (m *MariaDB) Stop() error {
	if m.proc == nil {
		return nil
	}
	return m.proc.stop(syscall.SIGTERM, 30*time.Second)
}

// Addr is host:port.
func (m *MariaDB) Addr() string { return fmt.Sprintf("%s:%d", m.Host, m.Port) }

// Config is how user connects to database: over verified TLS
// (MYSQL_TLS=true with the test CA) when the server has certificates,
// else without TLS.
func (m *MariaDB) Config(user, password, database string) config.MySQL {
	c := config.MySQL{Host: m.Host, Port: m.Port, User: user, Password: config.Secret(password), Database: database, TLSMode: "false"}
	if m.opts.Certs != nil {
		c.TLSMode, c.TLS.CA = "true", m.opts.Certs.CA
	}
	return c
}

// Root is root's connection, without a database.
func (m *MariaDB) Root() config.MySQL { return m.Config("root", m.opts.RootPassword, "") }

// handle is a handle on the server as as, closed with the test.
func (m *MariaDB) handle(t testing.TB, as config.MySQL) *sql.DB {
	t.Helper()
	db, err := store.MySQLHandle(as, as.Database)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Exec runs statements as as, failing the test on an error.
func (m *MariaDB) Exec(t testing.TB, as config.MySQL, statements ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := m.handle(t, as)
	for _, s := range statements {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// CreateUser creates user (from any host) with every privilege; with
// requireSSL the server accepts it over TLS only (REQUIRE SSL).
func (m *MariaDB) CreateUser(t testing.TB, user, password string, requireSSL bool) {
	t.Helper()
	require := ""
	if requireSSL {
		require = " REQUIRE SSL"
	}
	// Both hosts: a client on 127.0.0.1 is 'localhost' to MariaDB.
	for _, host := range []string{"%", "localhost"} {
		account := quoteMySQL(user) + "@" + quoteMySQL(host)
		m.Exec(t, m.Root(),
			"CREATE USER "+account+" IDENTIFIED BY "+quoteMySQL(password)+require,
			"GRANT ALL PRIVILEGES ON *.* TO "+account)
	}
}

// Query returns the first column of the first row of query, run as as.
func (m *MariaDB) Query(t testing.TB, as config.MySQL, query string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := m.handle(t, as)
	var v sql.NullString
	if err := db.QueryRowContext(ctx, query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v.String
}

func quoteMySQL(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
