// Command devstack starts, stops and reports the local development stack of
// iot-etl without Docker: the Temporal CLI dev server, a kfake Kafka broker,
// and PostgreSQL and MariaDB. Services already reachable at the configured
// addresses are used as they are; only the missing ones are started, detached,
// with their state and logs under .devstack/.
//
//	devstack [--dir .devstack] up|down|status
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake on the command line; it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usageText = `usage: devstack [--dir DIR] <command>

Commands:
  up      start whatever of Temporal, Kafka, PostgreSQL and MariaDB is not
          already reachable at the configured addresses, wait until all answer
  down    stop what devstack started (services it did not start are left alone)
  status  one line per service: name, address, up/down, managed/external

Flags:
  --dir DIR  state, pid files and logs (default .devstack)

Addresses come from the environment or .env: TEMPORAL_ADDRESS, TEMPORAL_UI_URL,
KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, KAFKA_PARTITIONS, POSTGRES_*, TIMESCALE_*,
MYSQL_*.
`

// run is the whole program; main only maps its error to an exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	global := flag.NewFlagSet("devstack", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.Usage = func() { fmt.Fprint(stderr, usageText) }
	dir := global.String("dir", ".devstack", "directory for state, pid files and logs")
	if err := global.Parse(args); err != nil {
		return err
	}
	rest := global.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usageText)
		return usageError{"missing command"}
	}
	name, rest := rest[0], rest[1:]

	sub := flag.NewFlagSet("devstack "+name, flag.ContinueOnError)
	sub.SetOutput(stderr)
	sub.StringVar(dir, "dir", *dir, "directory for state, pid files and logs")

	cfg, err := config.Load(ctx)
	if err != nil {
		return err
	}

	switch name {
	case "up", "down", "status":
		if err := sub.Parse(rest); err != nil {
			return err
		}
		if sub.NArg() > 0 {
			return usageError{fmt.Sprintf("%s takes no arguments, got %q", name, sub.Args())}
		}
		s, err := newStack(cfg, *dir)
		if err != nil {
			return err
		}
		switch name {
		case "up":
			return s.up(ctx, stdout)
		case "down":
			return s.down(ctx, stdout)
		default:
			return s.status(ctx, stdout)
		}
	case "kafka":
		// Internal: the broker process that `up` starts detached.
		return runKafkaBroker(ctx, cfg, sub, dir, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	fmt.Fprint(stderr, usageText)
	return usageError{fmt.Sprintf("unknown command %q", name)}
}
