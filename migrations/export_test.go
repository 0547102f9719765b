package migrations

import (
	"context"
	"database/sql"
)

// EnsureExtension exposes ensureExtension to the tests, which create the
// extension they name when its preload setting (if any) is visible.
func EnsureExtension(ctx context.Context, db *sql.DB, name, preloadSetting string) error {
	return ensureExtension(ctx, db, extension{name: name, preloadSetting: preloadSetting})
}
