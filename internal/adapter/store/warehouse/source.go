package warehouse

import (
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrSourceSchema means a source table lacks a column the batch reads, or
// is missing: its schema changed under the pipeline. Retrying cannot fix
// it; someone has to look at the source (or at the batch's column list).
var ErrSourceSchema = errors.New("source schema changed")

// MySQL's errors for a column or a table that does not exist.
const (
	mysqlUnknownColumn = 1054 // ER_BAD_FIELD_ERROR: Unknown column 'x' in 'field list'
	mysqlNoSuchTable   = 1146 // ER_NO_SUCH_TABLE: Table 'db.t' doesn't exist
)

// mysqlSchemaError turns MySQL's unknown-column and missing-table errors
// on table into an ErrSourceSchema naming the table, the server's message
// (which names the column) and the columns the batch reads. Other errors
// are returned as they are.
func mysqlSchemaError(table, columns string, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == mysqlUnknownColumn || me.Number == mysqlNoSuchTable) {
		return fmt.Errorf("%w: MySQL table %s: %s (error %d; the batch reads %s)", ErrSourceSchema, table, me.Message, me.Number, columns)
	}
	return err
}

// pgSchemaError is mysqlSchemaError for a PostgreSQL source: SQLSTATE
// 42703 (undefined_column) and 42P01 (undefined_table).
func pgSchemaError(table, columns string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42703" || pe.Code == "42P01") {
		return fmt.Errorf("%w: PostgreSQL table %s: %s (SQLSTATE %s; the batch reads %s)", ErrSourceSchema, table, pe.Message, pe.Code, columns)
	}
	return err
}
