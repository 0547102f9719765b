package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// Password returns a random password for a test role.
func Password() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "pw-" + hex.EncodeToString(b)
}

// UniqueName returns a name no other test uses: iotetl_t_<prefix>_<random>.
func UniqueName(prefix string) string { return uniqueName(prefix) }

// PostgresExec runs statements as the server's administrative user (the
// configured user) on database db, failing the test on error.
func PostgresExec(t testing.TB, p config.Postgres, db string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URLFor(db))
	if err != nil {
		Unavailable(t, "PostgreSQL at "+p.Addr(), err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// DropPostgresRolesAtCleanup drops the named roles when the test ends.
// Call it before creating the roles' databases: cleanups run last first,
// so the databases are dropped before their owners.
func DropPostgresRolesAtCleanup(t testing.TB, p config.Postgres, roles ...string) {
	t.Helper()
	stmts := make([]string, len(roles))
	for i, r := range roles {
		stmts[i] = "DROP ROLE IF EXISTS " + pgx.Identifier{r}.Sanitize()
	}
	postgresAtCleanup(t, p, stmts...)
}

// DropPostgresDatabaseAtCleanup drops database name when the test ends.
func DropPostgresDatabaseAtCleanup(t testing.TB, p config.Postgres, name string) {
	t.Helper()
	postgresAtCleanup(t, p, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// postgresAtCleanup runs stmts as the server's administrative user when
// the test ends, reporting (not stopping at) each failure.
func postgresAtCleanup(t testing.TB, p config.Postgres, stmts ...string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, p.URLFor("postgres"))
		if err != nil {
			t.Errorf("%s: %v", stmts[0], err)
			return
		}
		defer conn.Close(ctx)
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
	})
}

// MySQLExec runs statements as the configured (administrative) user,
// without a default database, failing the test on error.
func MySQLExec(t testing.TB, m config.MySQL, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := mysqlServer(ctx, t, m)
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// DropMySQLAtCleanup drops the named users and databases when the test
// ends.
func DropMySQLAtCleanup(t testing.TB, m config.MySQL, users, databases []string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := store.MySQLHandle(m, "")
		if err != nil {
			t.Errorf("mysql cleanup: %v", err)
			return
		}
		defer db.Close()
		for _, d := range databases {
			if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+d+"`"); err != nil {
				t.Errorf("drop database %s: %v", d, err)
			}
		}
		for _, u := range users {
			if _, err := db.ExecContext(ctx, "DROP USER IF EXISTS '"+u+"'@'%'"); err != nil {
				t.Errorf("drop user %s: %v", u, err)
			}
		}
	})
}
