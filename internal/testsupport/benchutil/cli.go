package benchutil

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main runs a benchmark command: run gets the arguments and a context that
// ends on Ctrl-C or SIGTERM; an error is printed after name and exits 1.
func Main(name string, run func(ctx context.Context, args []string) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// SetUnset sets the flags of fs that the command line did not give to
// values (flag name to value): the sizes of a smoke run, which explicit
// flags still override. Call it after fs.Parse.
func SetUnset(fs *flag.FlagSet, values map[string]string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, v := range values {
		if given[name] {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("-%s %s: %w", name, v, err)
		}
	}
	return nil
}
