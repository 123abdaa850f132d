// Command anyns is an anycast-aware authoritative DNS server.
//
// Usage:
//
//	anyns serve [--config FILE] [--listen ADDR]... [--zones DIR] [--id NAME] [--check]
//	anyns checkzone FILE... | --zones DIR
//	anyns ctl [--socket PATH] status [--json] | zones [--json] | drain | undrain
//	anyns version
//
// main is thin: it calls run and is the only place that exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage marks an error whose message has already been printed with the
// usage text; main exits 2 for it.
var errUsage = errors.New("usage")

// errFailed reports a failure that has already been printed in full (as by
// --check); main exits 1 without repeating it.
var errFailed = errors.New("failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	case errors.Is(err, errFailed):
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "anyns: %v\n", err)
		os.Exit(1)
	}
}

const usage = `usage:
  anyns serve [--config FILE] [--listen ADDR]... [--zones DIR] [--id NAME] [--check]
  anyns checkzone FILE... | --zones DIR
  anyns ctl [--socket PATH] status [--json] | zones [--json] | drain | undrain
  anyns version
`

// run executes one anyns command. ctx is cancelled by SIGINT or SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], stdout, stderr)
	case "ctl":
		return ctlCmd(ctx, args[1:], stdout, stderr)
	case "checkzone":
		return checkzoneCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "anyns %s\n", versionString())
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "anyns: unknown command %q\n%s", args[0], usage)
		return errUsage
	}
}
