// Command ferretdb runs FerretDB v1 as a MongoDB-wire server for the test rig
// and the benchmark: on PostgreSQL when -postgresql-url is given (what the rig
// uses), otherwise on SQLite files in -dir.
//
// It imports the embeddable package instead of FerretDB's own cmd: a plain
// `go install .../cmd/ferretdb` binary panics at start because it lacks the
// build-time version.txt (upstream issue #2982). The embedded package disables
// telemetry itself; FERRETDB_TELEMETRY=disable is set too, so the intent shows.
//
// Why PostgreSQL under the rig: FerretDB v1's SQLite backend pushes down no
// filter but a lone `_id`, so every conditional update decodes the whole
// collection in Go (measured: 476 ms of server CPU per checkout at 2,000
// payments, against 4 ms on PostgreSQL).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	pgURL := flag.String("postgresql-url", "", "PostgreSQL URL of the backend (e.g. postgres://postgres@127.0.0.1:5432/ferretdb)")
	dir := flag.String("dir", "data", "directory for SQLite files, when no -postgresql-url is given")
	flag.Parse()

	os.Setenv("FERRETDB_TELEMETRY", "disable")
	config := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if *pgURL != "" {
		config.Handler, config.PostgreSQLURL = "postgresql", *pgURL
	} else {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			fail(err)
		}
		config.Handler, config.SQLiteURL = "sqlite", "file:"+*dir+"/"
	}

	f, err := ferretdb.New(config)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "ferretdb (%s backend) listening on %s\n", config.Handler, *listen)
	if err := f.Run(ctx); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ferretdb:", err)
	os.Exit(1)
}
