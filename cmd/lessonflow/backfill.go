package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/lessonflow/lessonflow/workflows"
)

// runBackfill starts (or joins the running) back-fill: every video still in
// state approved, from before the post-approval stages existed, is
// watermarked, indexed and published.
func runBackfill(ctx context.Context, args []string) error {
	minAge := 10 * time.Minute
	asJSON := false
	cfg, err := loadConfig("backfill", args, func(fs *flag.FlagSet) {
		fs.DurationVar(&minAge, "min-age", minAge, "skip videos updated more recently than this (a reviewer's approval publishes on its own)")
		fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	})
	if err != nil {
		return err
	}
	if minAge < 0 {
		return fmt.Errorf("--min-age %s: must not be negative", minAge)
	}
	c, err := dialTemporal(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	// One back-fill at a time: a second command follows the running one.
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.BackfillWorkflowID, TaskQueue: cfg.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflows.BackfillWorkflowName, workflows.BackfillInput{MinAge: minAge})
	if err != nil {
		return fmt.Errorf("start back-fill: %w", err)
	}
	fmt.Fprintf(os.Stderr, "back-filling approved videos (workflow %s, run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.BackfillResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("back-fill: %w", err)
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	fmt.Printf("published %d (%d of them past a stale running stage), not published %d (left approved meanwhile), failed %d, busy %d, updated within %s %d, unprobed %d\n",
		res.Published, res.Stale, res.NotPublished, res.Failed, res.Busy, minAge, res.Recent, res.Unprobed)
	if len(res.FailedIDs) > 0 {
		fmt.Printf("failed (reasons in `lessonflow status ID`): %v\n", res.FailedIDs)
	}
	if len(res.BusyIDs) > 0 {
		fmt.Printf("busy (another run holds them; run again later): %v\n", res.BusyIDs)
	}
	return nil
}
