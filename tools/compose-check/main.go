// compose-check validates Compose files the way `docker compose config -q`
// does, with compose-go, the loader docker compose itself is built on: the
// compose-spec JSON schema, interpolation, normalisation and the consistency
// checks (depends_on targets, networks, volumes, ...), with every profile
// enabled. For machines without the compose plugin (this project's CI).
//
// usage: go run . FILE...   (relative paths in FILE resolve from FILE's directory)
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE...")
		os.Exit(2)
	}
	files := os.Args[1:]
	project, err := load(files)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", strings.Join(files, ", "), err)
		os.Exit(1)
	}
	names := project.ServiceNames()
	sort.Strings(names)
	fmt.Printf("%s: ok, %d services: %s\n", strings.Join(files, ", "), len(names), strings.Join(names, " "))
}

func load(files []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(filepath.Dir(files[0])),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithProfiles([]string{"*"}),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}
