package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/kdsync/kdsync/envflag"
	"github.com/kdsync/kdsync/mapping"
	"github.com/kdsync/kdsync/outcome"
)

const mappingUsage = `kdsync mapping test: what a mapping makes of one SCIM User.

Usage:
  kdsync mapping test [-file mapping.yaml] -user user.json [-groups "A,B"]

Without -file, kdsync's default mapping is used. The result is printed as
JSON: scope, userId, deptId, role, status; a record the mapping cannot map
prints the error (field, expression, value) and exits 1. A mapping file with
problems prints every one of them with its line.
`

// cmdMapping runs kdsync mapping <command>.
func cmdMapping(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stdout, mappingUsage)
			return nil
		}
		fmt.Fprint(stderr, mappingUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("kdsync mapping test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "mapping file (YAML of CEL expressions); empty: the default mapping")
	userFile := fs.String("user", "", "the SCIM User as JSON, as the IdP sends it (- for stdin)")
	groups := fs.String("groups", "", "display names of the user's groups, comma-separated")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *userFile == "" {
		fmt.Fprint(stderr, "kdsync mapping test: -user is required\n\n"+mappingUsage)
		return errUsage
	}
	m, err := mapping.LoadOrDefault(*file)
	if err != nil {
		return err
	}
	b, err := readInput(*userFile)
	if err != nil {
		return err
	}
	u, err := mapping.DecodeUser(b)
	if err != nil {
		return err
	}
	rec := mapping.Record{User: u, Groups: envflag.List(*groups)}
	r, err := m.Map(rec)
	var me *mapping.Error
	if errors.As(err, &me) {
		return fmt.Errorf("this user would be dead-lettered (reason %s): %w", outcome.ReasonMapping, err)
	}
	if err != nil {
		return err
	}
	return writeJSONTo(stdout, r)
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
