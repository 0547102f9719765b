package config

import (
	"time"

	"github.com/go-sql-driver/mysql"
)

// DriverConfig returns the go-sql-driver/mysql configuration for database
// on m's server (empty: no database, for CREATE DATABASE), password and
// TLS included. It is for the driver only; never log it.
func (m MySQL) DriverConfig(database string) (*mysql.Config, error) {
	c := mysql.NewConfig()
	c.User, c.Passwd = m.User, m.Password.Reveal()
	c.Net, c.Addr, c.DBName = "tcp", m.Addr(), database
	c.ParseTime, c.Loc = true, time.UTC
	c.MultiStatements, c.InterpolateParams = true, true
	c.Timeout = 5 * time.Second
	if m.TLSMode == "false" {
		return c, nil
	}
	tc, err := m.TLS.ClientConfig(m.Host)
	if err != nil {
		return nil, err
	}
	// preferred is the driver's meaning: TLS when the server offers it,
	// without verification, else plain text.
	tc.InsecureSkipVerify = m.TLSMode == "skip-verify" || m.TLSMode == "preferred"
	c.TLS, c.AllowFallbackToPlaintext = tc, m.TLSMode == "preferred"
	return c, nil
}
