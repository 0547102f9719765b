package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// postgresDirs are where distributions put the PostgreSQL server binaries
// when they are not on PATH (Debian keeps them out of it).
var postgresDirs = []string{
	"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin",
	"/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin",
}

// postgresComponent is one PostgreSQL server: an external one, or a
// throwaway server under DIR/<name> with trust authentication.
type postgresComponent struct {
	s *stack
	// name is "postgres", or "timescale" when TIMESCALE_* points at a
	// second server; prefix is the variables' prefix.
	name, prefix string
	cfg          config.Postgres
	// find locates a server binary; tests replace it.
	find func(name string) (string, bool)
}

func newPostgres(s *stack, name, prefix string, cfg config.Postgres) *postgresComponent {
	return &postgresComponent{s: s, name: name, prefix: prefix, cfg: cfg,
		find: func(bin string) (string, bool) { return findBinary(bin, postgresDirs...) }}
}

func (p *postgresComponent) Name() string                { return p.name }
func (p *postgresComponent) Addr() string                { return p.cfg.Addr() }
func (p *postgresComponent) Service() string             { return "PostgreSQL" }
func (p *postgresComponent) StartTimeout() time.Duration { return time.Minute }
func (p *postgresComponent) AddrVars() string {
	return fmt.Sprintf("%[1]s_HOST/%[1]s_PORT", p.prefix)
}

// StopSignal is SIGINT, PostgreSQL's fast shutdown: SIGTERM would wait for
// every client (a running worker, say) to disconnect first.
func (p *postgresComponent) StopSignal() syscall.Signal { return syscall.SIGINT }

func (p *postgresComponent) dataDir() string { return p.s.path(p.name) }

func (p *postgresComponent) Owns(args []string) bool { return slices.Contains(args, p.dataDir()) }

// Probe logs in to the maintenance database with the configured user.
func (p *postgresComponent) Probe(ctx context.Context) error {
	cc, err := pgx.ParseConfig(p.cfg.URLFor("postgres"))
	if err != nil {
		return answered("%s_*: %v", p.prefix, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		defer conn.Close(ctx)
		err = conn.Ping(ctx)
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "3D000":
		// No database "postgres", but the login worked.
		return nil
	case errors.As(err, &pgErr):
		return answered("PostgreSQL at %s refused user %q: %s (SQLSTATE %s): set %s_USER and %s_PASSWORD",
			p.cfg.Addr(), p.cfg.User, pgErr.Message, pgErr.Code, p.prefix, p.prefix)
	}
	return err
}

// missingServerError is the message when nothing answers and nothing can
// be started.
func (p *postgresComponent) missingServerError() error {
	return fmt.Errorf("nothing answers at %s, and no PostgreSQL server binaries (initdb, postgres) were found to start a throwaway server under %s: install them (Debian/Ubuntu: apt-get install postgresql) or point %s_HOST, %s_PORT, %s_USER and %s_PASSWORD at a running server",
		p.cfg.Addr(), p.s.shown(p.name), p.prefix, p.prefix, p.prefix, p.prefix)
}

func (p *postgresComponent) binaries() (initdb, postgres string, ok bool) {
	initdb, ok = p.find("initdb")
	if !ok {
		return "", "", false
	}
	// initdb and the server must be the same version: prefer the server
	// next to initdb's real file (PATH often holds only symlinks).
	if resolved, err := filepath.EvalSymlinks(initdb); err == nil {
		if cand := filepath.Join(filepath.Dir(resolved), "postgres"); isExecutable(cand) {
			return initdb, cand, true
		}
	}
	postgres, ok = p.find("postgres")
	return initdb, postgres, ok
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func (p *postgresComponent) Command(ctx context.Context, log io.Writer) (*exec.Cmd, error) {
	host, port, err := portOf(p.cfg.Addr())
	if err != nil {
		return nil, err
	}
	if !isLocalHost(host) {
		return nil, notLocalError(p.cfg.Addr(), "PostgreSQL", fmt.Sprintf("%[1]s_HOST, %[1]s_PORT", p.prefix))
	}
	initdb, postgres, ok := p.binaries()
	if !ok {
		return nil, p.missingServerError()
	}
	cred, err := p.credential()
	if err != nil {
		return nil, err
	}
	dir := p.dataDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		if len(entries) > 0 {
			return nil, fmt.Errorf("%s holds files but no PostgreSQL cluster (an interrupted initdb?): delete it and run up again", p.s.shown(p.name))
		}
		// Trust authentication: this server is a throwaway on loopback.
		init := exec.CommandContext(ctx, initdb, "-D", dir, "-U", p.cfg.User, "--auth=trust", "--encoding=UTF8", "--no-locale")
		init.Dir, init.Stdout, init.Stderr = dir, log, log
		init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if err := init.Run(); err != nil {
			return nil, fmt.Errorf("%s failed (%w); see %s", initdb, err, p.s.shownLog(p))
		}
	}
	listen := host
	if listen == "" {
		listen = "127.0.0.1"
	}
	cmd := exec.Command(postgres, "-D", dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses="+listen,
		// TCP only: the default socket directory may not exist or be
		// writable for this user.
		"-c", "unix_socket_directories=",
		"-c", "logging_collector=off")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd, nil
}

// credential is the unprivileged user PostgreSQL runs as when devstack runs
// as root (initdb and postgres refuse root), or nil.
func (p *postgresComponent) credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var u *user.User
	var err error
	for _, name := range []string{"postgres", "nobody"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres or nobody user to run it as: run devstack as a normal user, or point %s_HOST/%s_PORT at a running server", p.prefix, p.prefix)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if dir := blockedParent(p.dataDir(), cred); dir != "" {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root, and user %s, which devstack runs it as, cannot enter %s: use a --dir whose parents others may enter (such as under /var/tmp), or run devstack as a normal user", u.Username, dir)
	}
	return cred, nil
}

// blockedParent returns the first existing parent directory of path that
// cred may not enter, or "".
func blockedParent(path string, cred *syscall.Credential) string {
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err == nil {
			mode := st.Mode
			ok := mode&0o001 != 0 ||
				st.Uid == cred.Uid && mode&0o100 != 0 ||
				st.Gid == cred.Gid && mode&0o010 != 0
			if !ok {
				return dir
			}
		}
		if dir == filepath.Dir(dir) {
			return ""
		}
	}
}

func (p *postgresComponent) Prepare(ctx context.Context, managed bool) error { return nil }

func (p *postgresComponent) Describe(ctx context.Context) string {
	conn, err := pgx.Connect(ctx, p.cfg.URLFor("postgres"))
	if err != nil {
		return ""
	}
	defer conn.Close(ctx)
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return ""
	}
	if i := strings.IndexByte(version, ' '); i > 0 {
		version = version[:i] // drop the distribution's build note
	}
	return "PostgreSQL " + version
}
