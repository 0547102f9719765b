package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsDataError reports whether err is PostgreSQL rejecting the data itself
// (SQLSTATE class 22, data exception, or 23, integrity constraint
// violation). Retrying the same statement cannot succeed; everything else
// (connections, deadlocks, serialization, shutdowns) may.
func IsDataError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23":
		return true
	}
	return false
}

// IsUniqueViolation reports whether err is PostgreSQL refusing a row
// whose key is taken (SQLSTATE 23505).
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
