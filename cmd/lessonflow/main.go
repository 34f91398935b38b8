// Command lessonflow runs LessonFlow: `dev` (everything on one machine), `api`,
// `worker`, and the client commands `upload` and `status`.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `lessonflow: video moderation and recommendation pipeline for lessons.

Usage:
  lessonflow dev [--worker=false] [flags]   Temporal dev server (unless TEMPORAL_ADDRESS), worker and API in one process
  lessonflow api [flags]                    the HTTP API alone
  lessonflow worker [flags]                 a pipeline worker (run N of them on N machines to scale out)
  lessonflow upload FILE [--title T] [--level N] [--language L] [--tags a,b] [--teacher ID] [--wait]
  lessonflow status ID                      a video's state, stages and decision

Configuration comes from the environment (see README, Configuration); flags override it.
`

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "dev":
		err = runDev(ctx, args)
	case "api":
		err = runAPI(ctx, args)
	case "worker":
		err = runWorker(ctx, args)
	case "upload":
		err = runUpload(ctx, args)
	case "status":
		err = runStatus(ctx, args)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "lessonflow: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lessonflow:", err)
		os.Exit(1)
	}
}
