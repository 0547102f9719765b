package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

func init() {
	// The driver logs protocol errors itself; a probe of a port that
	// speaks something else must not spray them over devstack's output.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
}

// mysqlDirs are where server binaries live when they are not on PATH.
var mysqlDirs = []string{"/usr/sbin", "/usr/libexec", "/usr/local/sbin", "/usr/local/mysql/bin", "/usr/local/mysql/scripts"}

// mysqlComponent is the device registry's server: an external MySQL or
// MariaDB, or a throwaway MariaDB/MySQL under DIR/mysql whose root has an
// empty password.
type mysqlComponent struct {
	s   *stack
	cfg config.MySQL
	// find locates a server binary; tests replace it.
	find func(name string) (string, bool)
}

func newMySQL(s *stack, cfg config.MySQL) *mysqlComponent {
	return &mysqlComponent{s: s, cfg: cfg,
		find: func(bin string) (string, bool) { return findBinary(bin, mysqlDirs...) }}
}

func (m *mysqlComponent) Name() string                { return "mysql" }
func (m *mysqlComponent) Addr() string                { return m.cfg.Addr() }
func (m *mysqlComponent) Service() string             { return "MySQL/MariaDB" }
func (m *mysqlComponent) AddrVars() string            { return "MYSQL_HOST/MYSQL_PORT" }
func (m *mysqlComponent) StartTimeout() time.Duration { return time.Minute }
func (m *mysqlComponent) StopSignal() syscall.Signal  { return syscall.SIGTERM }

func (m *mysqlComponent) dataDir() string { return m.s.path("mysql") }

func (m *mysqlComponent) Owns(args []string) bool {
	return slices.Contains(args, "--datadir="+m.dataDir())
}

// rootOfFresh is the login of a server devstack initialised: root without
// a password, before Prepare creates the configured user.
func (m *mysqlComponent) rootOfFresh() config.MySQL {
	root := m.cfg
	root.User, root.Password = "root", ""
	return root
}

func ping(ctx context.Context, c config.MySQL) error {
	db, err := store.MySQLHandle(c, "")
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// Probe logs in with the configured user. A server devstack started is
// also fine when its passwordless root answers: Prepare then adds the
// configured user.
func (m *mysqlComponent) Probe(ctx context.Context) error {
	err := ping(ctx, m.cfg)
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return err
	}
	if m.s.managedPid(m) != 0 && ping(ctx, m.rootOfFresh()) == nil {
		return nil
	}
	return answered("MySQL/MariaDB at %s refused user %q: %s (error %d): set MYSQL_USER and MYSQL_PASSWORD",
		m.cfg.Addr(), m.cfg.User, me.Message, me.Number)
}

func (m *mysqlComponent) missingServerError() error {
	return fmt.Errorf("nothing answers at %s, and no MariaDB or MySQL server binaries (mariadbd or mysqld) were found to start a throwaway server under %s: install them (Debian/Ubuntu: apt-get install mariadb-server) or point MYSQL_HOST, MYSQL_PORT, MYSQL_USER and MYSQL_PASSWORD at a running server",
		m.cfg.Addr(), m.s.shown("mysql"))
}

func (m *mysqlComponent) Command(ctx context.Context, log io.Writer) (*exec.Cmd, error) {
	host, port, err := portOf(m.cfg.Addr())
	if err != nil {
		return nil, err
	}
	if !isLocalHost(host) {
		return nil, notLocalError(m.cfg.Addr(), "MariaDB", "MYSQL_HOST, MYSQL_PORT")
	}
	server, ok := m.find("mariadbd")
	if !ok {
		server, ok = m.find("mysqld")
	}
	if !ok {
		return nil, m.missingServerError()
	}
	dir := m.dataDir()
	// Both servers refuse root unless told to; here root runs a throwaway.
	var asRoot []string
	if os.Geteuid() == 0 {
		asRoot = []string{"--user=root"}
	}
	if _, err := os.Stat(filepath.Join(dir, "mysql")); errors.Is(err, os.ErrNotExist) {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			return nil, fmt.Errorf("%s holds files but no initialised server (an interrupted install?): delete it and run up again", m.s.shown("mysql"))
		}
		if err := m.initialise(ctx, server, dir, asRoot, log); err != nil {
			return nil, err
		}
	}
	listen := host
	if listen == "" || listen == "localhost" {
		listen = "127.0.0.1"
	}
	args := append([]string{"--no-defaults", "--datadir=" + dir}, asRoot...)
	args = append(args, "--port="+strconv.Itoa(port), "--bind-address="+listen,
		"--socket="+filepath.Join(dir, "mysqld.sock"), "--pid-file="+filepath.Join(dir, "mysqld.pid"),
		"--skip-log-bin")
	cmd := exec.Command(server, args...)
	cmd.Dir = dir
	return cmd, nil
}

// initialise creates the system tables, with a passwordless root.
func (m *mysqlComponent) initialise(ctx context.Context, server, dir string, asRoot []string, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	var cmd *exec.Cmd
	if script, ok := m.find("mariadb-install-db"); ok {
		cmd = exec.CommandContext(ctx, script, append([]string{"--no-defaults", "--datadir=" + dir,
			"--auth-root-authentication-method=normal", "--skip-test-db"}, asRoot...)...)
	} else if script, ok := m.find("mysql_install_db"); ok && filepath.Base(server) == "mariadbd" {
		cmd = exec.CommandContext(ctx, script, append([]string{"--no-defaults", "--datadir=" + dir,
			"--auth-root-authentication-method=normal", "--skip-test-db"}, asRoot...)...)
	} else {
		// MySQL 5.7 and later initialise with the server itself.
		cmd = exec.CommandContext(ctx, server, append([]string{"--no-defaults", "--datadir=" + dir,
			"--initialize-insecure"}, asRoot...)...)
	}
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s failed (%w); see %s", cmd.Path, err, m.s.shownLog(m))
	}
	return nil
}

// Prepare gives a server devstack started the configured user, so the
// pipeline logs in exactly as it would to an external server.
func (m *mysqlComponent) Prepare(ctx context.Context, managed bool) error {
	if !managed || ping(ctx, m.cfg) == nil {
		return nil
	}
	db, err := store.MySQLHandle(m.rootOfFresh(), "")
	if err != nil {
		return err
	}
	defer db.Close()
	var stmts []string
	var args [][]any
	if m.cfg.User == "root" {
		rows, err := db.QueryContext(ctx, "SELECT host FROM mysql.user WHERE user = 'root'")
		if err != nil {
			return err
		}
		var hosts []string
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			hosts = append(hosts, h)
		}
		rows.Close()
		for _, h := range hosts {
			stmts = append(stmts, "ALTER USER 'root'@? IDENTIFIED BY ?")
			args = append(args, []any{h, m.cfg.Password.Reveal()})
		}
	} else {
		stmts = []string{
			"CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY ?",
			"GRANT ALL PRIVILEGES ON *.* TO ?@'%' WITH GRANT OPTION",
			"CREATE USER IF NOT EXISTS ?@'localhost' IDENTIFIED BY ?",
			"GRANT ALL PRIVILEGES ON *.* TO ?@'localhost' WITH GRANT OPTION",
		}
		u, pw := m.cfg.User, m.cfg.Password.Reveal()
		args = [][]any{{u, pw}, {u}, {u, pw}, {u}}
	}
	for i, q := range stmts {
		if _, err := db.ExecContext(ctx, q, args[i]...); err != nil {
			return fmt.Errorf("create user %s on the throwaway server: %w", m.cfg.User, err)
		}
	}
	return ping(ctx, m.cfg)
}

func (m *mysqlComponent) Describe(ctx context.Context) string {
	db, err := store.MySQLHandle(m.cfg, "")
	if err != nil {
		return ""
	}
	defer db.Close()
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return ""
	}
	kind := "MySQL"
	if strings.Contains(version, "MariaDB") {
		kind = "MariaDB"
	}
	if i := strings.IndexByte(version, '-'); i > 0 {
		version = version[:i]
	}
	return kind + " " + version
}
