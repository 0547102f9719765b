// Package warehouse is the SQL of the batch ETL on the TimescaleDB
// database: staging a run's sources, the transform's reads and writes,
// loading the dimensional warehouse, the run's bookkeeping in dwh.etl_runs,
// and reading facts back for the feature export. Everything a run does is
// a method of its Run.
package warehouse

import "github.com/jackc/pgx/v5/pgxpool"

// Run is one batch run on the warehouse database. ID is the workflow run
// id: it names the run's staging partitions and is written to every fact
// and run row for lineage. Generation is the run's staging generation (1,
// then one more each time the run re-creates lost staging): the methods
// that read or write staging check the run's marker of that generation
// (see CheckStaging). 0 means a run without a marker, which is not checked.
type Run struct {
	TS         *pgxpool.Pool
	ID         string
	Generation int
}
