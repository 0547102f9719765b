package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
)

// profiles are the -cpuprofile, -memprofile and -sqlprofile flags: what a
// worker records about itself while it serves, for docs/PERFORMANCE.md.
type profiles struct {
	cpu, mem, sql string
	stmts         *store.Statements
	cpuFile       *os.File
}

func (p *profiles) flags(fs *flag.FlagSet) {
	fs.StringVar(&p.cpu, "cpuprofile", "", "write a pprof CPU profile of the whole run to this file")
	fs.StringVar(&p.mem, "memprofile", "", "write a pprof allocation profile to this file at exit")
	fs.StringVar(&p.sql, "sqlprofile", "", "write the PostgreSQL statements' calls and total time to this file at exit")
}

// start begins the CPU profile and the statement statistics the flags ask
// for.
func (p *profiles) start() error {
	if p.sql != "" {
		p.stmts = store.NewStatements()
	}
	if p.cpu == "" {
		return nil
	}
	f, err := os.Create(p.cpu)
	if err != nil {
		return fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("-cpuprofile: %w", err)
	}
	p.cpuFile = f
	return nil
}

// stop writes what start began and the allocation profile.
func (p *profiles) stop() error {
	var errs []error
	if p.cpuFile != nil {
		pprof.StopCPUProfile()
		errs = append(errs, p.cpuFile.Close())
	}
	if p.mem != "" {
		runtime.GC()
		errs = append(errs, writeFile(p.mem, func(f *os.File) error { return pprof.Lookup("allocs").WriteTo(f, 0) }))
	}
	if p.stmts != nil {
		errs = append(errs, writeFile(p.sql, func(f *os.File) error { return p.stmts.WriteTable(f, 0) }))
	}
	return errors.Join(errs...)
}

func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
