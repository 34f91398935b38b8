package activities

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
)

// TestApprovedPage: only approved videos are listed, and each lands in
// exactly one bucket: ready, running (with the stage and its start, for the
// workflow to judge), recent (updated after the cut-off) or unprobed; the
// cursor walks them all.
func TestApprovedPage(t *testing.T) {
	ctx := context.Background()
	cat, err := catalog.OpenSQLite(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	info := media.Info{Format: "mp4", DurationMS: 4000, Width: 640, Height: 360, FPS: 25, Codec: "h264", PixFmt: "yuv420p"}
	mk := func(id string, state catalog.State, probed bool) {
		t.Helper()
		if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: id, SHA256: id, BlobKey: "uploads/" + id, Title: id, Level: 1, Language: "en"}); err != nil {
			t.Fatal(err)
		}
		if probed {
			if err := cat.SetMedia(ctx, id, info); err != nil {
				t.Fatal(err)
			}
		}
		if err := cat.SetState(ctx, id, state, ""); err != nil {
			t.Fatal(err)
		}
	}
	mk("vready1", catalog.StateApproved, true)
	mk("vready2", catalog.StateApproved, true)
	mk("vunprobed", catalog.StateApproved, false)
	mk("vbusy", catalog.StateApproved, true)
	started := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Microsecond)
	if err := cat.StageFinished(ctx, "vbusy", StageSample, started.Add(-time.Hour), catalog.StageSucceeded, ""); err != nil {
		t.Fatal(err)
	}
	if err := cat.StageStarted(ctx, "vbusy", StageWatermark, started); err != nil {
		t.Fatal(err)
	}
	mk("vpublished", catalog.StatePublished, true)
	mk("vfailed", catalog.StateFailed, true)
	time.Sleep(2 * time.Millisecond) // the catalog keeps microseconds
	cutoff := time.Now()
	time.Sleep(2 * time.Millisecond)
	mk("vrecent", catalog.StateApproved, true)

	a := &Activities{Catalog: cat}
	var ready, busy, recent, unprobed []string
	cursor, pages := "", 0
	for {
		p, err := a.ApprovedPage(ctx, BackfillPageInput{Cursor: cursor, Limit: 2, UpdatedBefore: cutoff})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, v := range p.Videos {
			if v.Media != info || v.BlobKey != "uploads/"+v.VideoID || v.SHA256 != v.VideoID {
				t.Fatalf("page video %+v", v)
			}
			ready = append(ready, v.VideoID)
		}
		for _, r := range p.Running {
			if r.Stage != StageWatermark || !r.StartedAt.Equal(started) || r.Media != info {
				t.Fatalf("running video %+v, want its watermark stage started at %s", r, started)
			}
			busy = append(busy, r.VideoID)
		}
		recent, unprobed = append(recent, p.Recent...), append(unprobed, p.Unprobed...)
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	slices.Sort(ready)
	if !slices.Equal(ready, []string{"vready1", "vready2"}) || !slices.Equal(busy, []string{"vbusy"}) ||
		!slices.Equal(recent, []string{"vrecent"}) || !slices.Equal(unprobed, []string{"vunprobed"}) || pages < 3 {
		t.Fatalf("ready %v busy %v recent %v unprobed %v in %d pages", ready, busy, recent, unprobed, pages)
	}
}
