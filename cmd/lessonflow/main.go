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
  lessonflow watermark embed --payload HEX16 [--crf N] [--preset P] [--grid auto|fine|block] IN OUT
  lessonflow watermark detect [--json] FILE trace a leaked copy (a video or an image) to its video
  lessonflow backfill [--min-age D] [--json] watermark, index and publish videos left approved from before those stages (a workflow)
  lessonflow reembed [flags]                fill the LESSONFLOW_EMBED_MODEL collection with every published video (a workflow)
  lessonflow eval-recs [--lessons N ...]    offline evaluation of recommendations on generated users (recall, NDCG, coverage)
  lessonflow bench-recs [--lessons N ...]   recommendation latency, throughput and recall at 100K lessons through the HTTP API
  lessonflow recheck --policy FILE [--wait] re-check existing videos in shadow under a new policy (admin key)

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
	case "watermark":
		err = runWatermark(ctx, args)
	case "reembed":
		err = runReembed(ctx, args)
	case "backfill":
		err = runBackfill(ctx, args)
	case "eval-recs":
		err = runEvalRecs(ctx, args)
	case "bench-recs":
		err = runBenchRecs(ctx, args)
	case "recheck":
		err = runRecheck(ctx, args)
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
