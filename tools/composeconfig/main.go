// Command composeconfig loads a Compose file the way `docker compose config` does,
// with compose-go (the loader inside Docker Compose v2): the .env file beside it,
// interpolation, validation against the Compose specification's JSON schema,
// normalization and consistency checks. It prints the resolved project as JSON,
// or the loader's error and exit status 1. No Docker engine is needed.
//
// Services of every profile are included.
//
// Usage: composeconfig [path/to/docker-compose.yml]
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	file := "docker-compose.yml"
	if len(os.Args) > 1 {
		file = os.Args[1]
	}
	if err := run(file); err != nil {
		fmt.Fprintln(os.Stderr, "composeconfig:", err)
		os.Exit(1)
	}
}

func run(file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	// The shell's environment is left out on purpose: the result is what .env alone gives
	// a facilitator in a fresh shell.
	opts, err := cli.NewProjectOptions([]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		// Every profile: the tools `docker compose run` starts are checked like the services.
		cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		return err
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}
