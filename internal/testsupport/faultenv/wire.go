package faultenv

import (
	"strconv"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// Links are the links between a worker and the services of a
// configuration.
type Links struct {
	MySQL, Locations, Timescale, Temporal *Link
}

// All is every link, for faults that hit them all.
func (l Links) All() []*Link { return []*Link{l.MySQL, l.Locations, l.Timescale, l.Temporal} }

// Wire puts a link between the worker and each of MySQL, the locations
// database, TimescaleDB and Temporal of cfg, and points env (the worker's
// environment) at the links.
func (p *Proxies) Wire(cfg *config.Config, env map[string]string) Links {
	l := Links{
		MySQL:     p.Link("mysql", cfg.MySQL.Addr()),
		Locations: p.Link("locations", cfg.Postgres.Addr()),
		Timescale: p.Link("timescale", cfg.Timescale.Addr()),
		Temporal:  p.Link("temporal", cfg.Temporal.Address),
	}
	env["MYSQL_HOST"], env["MYSQL_PORT"] = "127.0.0.1", strconv.Itoa(l.MySQL.Port())
	env["POSTGRES_HOST"], env["POSTGRES_PORT"] = "127.0.0.1", strconv.Itoa(l.Locations.Port())
	env["TIMESCALE_HOST"], env["TIMESCALE_PORT"] = "127.0.0.1", strconv.Itoa(l.Timescale.Port())
	env["TEMPORAL_ADDRESS"] = l.Temporal.Addr()
	return l
}
