package metrics

import (
	"database/sql"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// PgxPools exports the statistics of pgx pools, labelled pool=name.
type PgxPools map[string]*pgxpool.Pool

var (
	descPoolConns    = desc("pgxpool_connections", "Connections of the pool by state: acquired (in use), idle or constructing.", "pool", "state")
	descPoolMax      = desc("pgxpool_max_connections", "The pool's maximum size.", "pool")
	descPoolAcquires = desc("pgxpool_acquires_total", "Connections acquired from the pool.", "pool")
	descPoolEmpty    = desc("pgxpool_empty_acquires_total", "Acquires that had to wait for a connection (none was idle).", "pool")
	descPoolCanceled = desc("pgxpool_canceled_acquires_total", "Acquires cancelled by their context while waiting.", "pool")
	descPoolWait     = desc("pgxpool_acquire_wait_seconds_total", "Time spent waiting for connections.", "pool")
)

// Describe implements prometheus.Collector.
func (p PgxPools) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPoolConns, descPoolMax, descPoolAcquires, descPoolEmpty, descPoolCanceled, descPoolWait} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p PgxPools) Collect(ch chan<- prometheus.Metric) {
	for name, pool := range p {
		s := pool.Stat()
		for state, n := range map[string]int32{"acquired": s.AcquiredConns(), "idle": s.IdleConns(), "constructing": s.ConstructingConns()} {
			ch <- prometheus.MustNewConstMetric(descPoolConns, prometheus.GaugeValue, float64(n), name, state)
		}
		ch <- prometheus.MustNewConstMetric(descPoolMax, prometheus.GaugeValue, float64(s.MaxConns()), name)
		ch <- prometheus.MustNewConstMetric(descPoolAcquires, prometheus.CounterValue, float64(s.AcquireCount()), name)
		ch <- prometheus.MustNewConstMetric(descPoolEmpty, prometheus.CounterValue, float64(s.EmptyAcquireCount()), name)
		ch <- prometheus.MustNewConstMetric(descPoolCanceled, prometheus.CounterValue, float64(s.CanceledAcquireCount()), name)
		ch <- prometheus.MustNewConstMetric(descPoolWait, prometheus.CounterValue, s.AcquireDuration().Seconds(), name)
	}
}

// SQLDB exports a database/sql pool's statistics as client_golang's
// go_sql_* series, labelled db_name=name.
func SQLDB(name string, db *sql.DB) prometheus.Collector {
	return collectors.NewDBStatsCollector(db, name)
}
