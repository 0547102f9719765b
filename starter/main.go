// Command starter is the operator CLI of iot-etl: migrate and seed the
// databases, check connectivity, run and schedule the batch ETL, control the
// stream ETL, simulate devices and inspect the topic and the dead letters.
//
// Run `starter help` for the list of commands and `starter <command> -h` for
// the flags of one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/sethvargo/go-envconfig"
)

// command is one subcommand. Name may have two words ("batch run").
type command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, app *App, args []string) error
}

var commands = map[string]command{}

// register adds a command; each cmd_*.go file registers its own in init.
func register(c command) {
	if _, dup := commands[c.Name]; dup {
		panic("duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// errUsage marks an error that is the operator's input, printed without a
// stack of wrapping and with exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	os.Exit(code)
}

// run executes one command. env, when not nil, replaces the process
// environment and .env as the configuration source (tests pass a map).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env envconfig.Lookuper) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, args)
		return 0
	}
	cmd, rest, ok := lookup(args)
	if !ok {
		fmt.Fprintf(stderr, "starter: unknown command %q\n\n", strings.Join(args, " "))
		usage(stderr, nil)
		return 2
	}
	app, err := newApp(ctx, stdout, stderr, env)
	if err != nil {
		fmt.Fprintf(stderr, "starter: %v\n", err)
		return 1
	}
	defer app.Close()
	if err := cmd.Run(ctx, app, rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "starter %s: %v\n", cmd.Name, err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// lookup finds the longest command name matching the first words of args.
func lookup(args []string) (command, []string, bool) {
	if len(args) >= 2 {
		if c, ok := commands[args[0]+" "+args[1]]; ok {
			return c, args[2:], true
		}
	}
	if c, ok := commands[args[0]]; ok {
		return c, args[1:], true
	}
	return command{}, nil, false
}

func usage(w io.Writer, args []string) {
	prefix := ""
	if len(args) > 1 {
		prefix = args[1]
	}
	fmt.Fprintln(w, "starter: the iot-etl operator CLI")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: starter <command> [flags]   (starter <command> -h for its flags)")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range names {
		fmt.Fprintf(tw, "  %s\t%s\n", n, commands[n].Summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Configuration comes from the environment and ./.env; see .env.example.")
}

// newFlags returns a FlagSet for a command whose -h prints its summary.
func newFlags(app *App, name, argsHelp string) *flag.FlagSet {
	fs := flag.NewFlagSet("starter "+name, flag.ContinueOnError)
	fs.SetOutput(app.Err)
	fs.Usage = func() {
		fmt.Fprintf(app.Err, "Usage: starter %s %s\n\n%s\n\nFlags:\n", name, argsHelp, commands[name].Summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and turns a flag error into errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}
