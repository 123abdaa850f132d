package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/anyns/anyns/zone"
)

// checkzoneCmd implements `anyns checkzone FILE...` and `anyns checkzone
// --zones DIR`: the loader and validation of serve, one line per problem as
// file:line: message, a summary line per valid zone, exit 1 if any zone is
// invalid. Like named-checkzone and kzonecheck, for CI and pre-commit hooks.
func checkzoneCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("anyns checkzone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("zones", "", "check every *.zone file in this `directory`")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: anyns checkzone FILE...\n       anyns checkzone --zones DIR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if (*dir == "") == (fs.NArg() == 0) {
		fs.Usage()
		return errUsage
	}
	var (
		zs  []*zone.Zone
		err error
	)
	if *dir != "" {
		zs, err = zone.LoadDir(*dir)
	} else {
		var errs []error
		for _, f := range fs.Args() {
			// $INCLUDE is confined to the file's own directory, as serve
			// confines it to the zones directory.
			z, err := zone.ParseFile(f, filepath.Dir(f))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			zs = append(zs, z)
		}
		err = errors.Join(errs...)
	}
	for _, z := range zs {
		fmt.Fprintf(stdout, "%s: zone %s serial %d records %d: OK\n", z.File, z.Origin, z.Serial, z.Records)
	}
	problems := unjoin(err)
	for _, e := range problems {
		fmt.Fprintln(stdout, e)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "%d zone(s) OK, %d problem(s)\n", len(zs), len(problems))
		return errFailed
	}
	return nil
}
