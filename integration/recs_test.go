package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/worker"
	"github.com/lessonflow/lessonflow/workflows"
)

// TestBlockedNeverRecommended runs the real pipeline (ffmpeg, ONNX, Temporal)
// under the test policy that blocks the harmless Drawing label: Big Buck
// Bunny and the car clip are approved, embedded, indexed and published;
// Sintel and SMPTE bars are blocked. Blocked videos must never be indexed,
// recommended, or offered as similar, and events on them answer 404.
func TestBlockedNeverRecommended(t *testing.T) {
	s := newStack(t, stackOptions{policy: "test-block-drawing"})
	bbb := testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	car := testenv.SharedVideo(t, "car-detection.mp4")
	sintel := testenv.SharedVideo(t, "Sintel_1080_10s_2MB.mp4")
	bars := testenv.Clip(t, "smptebars-6s.mp4", "-f", "lavfi", "-i", "smptebars=size=640x360:rate=10:duration=6", "-c:v", "libx264", "-pix_fmt", "yuv420p")
	states := map[string]string{}
	ids := map[string]string{}
	for p, v := range uploadAll(t, s, []string{bbb, car, sintel, bars}) {
		ids[p] = v["id"].(string)
		states[ids[p]] = v["state"].(string)
		t.Logf("%s: %s (%s) %v", p, v["state"], v["id"], v["error"])
	}
	if states[ids[bbb]] != "published" || states[ids[sintel]] != "blocked" || states[ids[bars]] != "blocked" {
		t.Fatalf("states %v: want Big Buck Bunny published, Sintel and bars blocked", states)
	}
	var published, blocked []string
	for id, st := range states {
		switch st {
		case "published":
			published = append(published, id)
		case "blocked":
			blocked = append(blocked, id)
		default:
			t.Fatalf("%s ended %s", id, st)
		}
	}
	ctx := context.Background()
	// The index holds exactly the published videos.
	if n, err := s.vectors.Count(ctx); err != nil || n != len(published) {
		t.Fatalf("index holds %d vectors (%v), want %d", n, err, len(published))
	}
	for _, id := range blocked {
		if _, err := s.vectors.Get(ctx, id); !errors.Is(err, vectorstore.ErrNotFound) {
			t.Errorf("blocked %s in the index: %v", id, err)
		}
	}
	bbbID := ids[bbb]
	v, err := s.vectors.Get(ctx, bbbID)
	if err != nil || v.Language != "en" || v.Level != 2 || v.PublishedAt.IsZero() {
		t.Fatalf("indexed Big Buck Bunny: %+v %v", v, err)
	}
	video, _ := s.catalog.GetVideo(ctx, bbbID)
	for _, st := range video.Stages {
		if (st.Name == "embed" || st.Name == "index" || st.Name == "publish") && st.State != "succeeded" {
			t.Errorf("stage %s: %s %s", st.Name, st.State, st.Error)
		}
	}

	// Events: published lessons are stored, blocked ones answer 404 per item.
	now := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	var body bytes.Buffer
	fmt.Fprintf(&body, `{"events":[{"event_id":"e1","lesson_id":%q,"type":"complete","at":%q,"watch_seconds":10}`, bbbID, now)
	for i, id := range blocked {
		fmt.Fprintf(&body, `,{"event_id":"b%d","lesson_id":%q,"type":"view","at":%q}`, i, id, now)
	}
	body.WriteString(`]}`)
	req, _ := http.NewRequest("POST", s.api.URL+"/v1/users/viewer-1/events", &body)
	req.Header.Set("Content-Type", "application/json")
	code, out := s.do(appKey, req)
	if code != http.StatusMultiStatus {
		t.Fatalf("events: %d %v", code, out)
	}
	for i, it := range out["items"].([]any) {
		st := it.(map[string]any)["status"].(float64)
		if (i == 0 && st != 201) || (i > 0 && st != 404) {
			t.Errorf("event %d: %v", i, it)
		}
	}

	isBlocked := map[string]bool{}
	for _, id := range blocked {
		isBlocked[id] = true
	}
	check := func(path string) []any {
		t.Helper()
		code, out := s.get(appKey, path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, code, out)
		}
		items := out["items"].([]any)
		for _, it := range items {
			m := it.(map[string]any)
			if isBlocked[m["lesson_id"].(string)] {
				t.Errorf("GET %s returned blocked %s", path, m["lesson_id"])
			}
			if m["reason"] == "" || m["rec_id"] == "" {
				t.Errorf("GET %s: item without reason or rec_id: %v", path, m)
			}
		}
		return items
	}
	// Personalised (the user completed Big Buck Bunny), cold start, similar.
	personal := check("/v1/users/viewer-1/recommendations?limit=10")
	for _, it := range personal {
		if it.(map[string]any)["lesson_id"] == bbbID {
			t.Errorf("a completed lesson was recommended again")
		}
	}
	if cold := check("/v1/users/newcomer/recommendations?limit=10"); len(cold) != len(published) {
		t.Errorf("cold start gave %d items, want every published lesson (%d)", len(cold), len(published))
	}
	if sim := check("/v1/lessons/" + bbbID + "/similar?limit=10"); len(sim) != len(published)-1 {
		t.Errorf("similar gave %d items, want the other published lessons (%d)", len(sim), len(published)-1)
	}
	for _, id := range blocked {
		if code, _ := s.get(appKey, "/v1/lessons/"+id+"/similar"); code != http.StatusNotFound {
			t.Errorf("similar to blocked %s: %d, want 404", id, code)
		}
	}
	checkReembed(t, s, published, blocked)
}

// checkReembed plays a model change: a worker whose embedding collection is
// new and empty runs the Reembed workflow, which must fill it with exactly
// the published videos (the same vectors here, the model being the same),
// and a second run must add nothing.
func checkReembed(t *testing.T, s *stack, published, blocked []string) {
	t.Helper()
	ctx := context.Background()
	e := embedder(t)
	name := vectorstore.CollectionName("next-model", e.Dim())
	fresh, err := vectorstore.OpenSQLiteVec(filepath.Join(s.dataDir, "vectors"), name, e.Dim())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	const queue = "reembed-next"
	w := sdkworker.New(s.temporal, queue, sdkworker.Options{})
	worker.Register(w, &activities.Activities{Catalog: s.catalog, Blobs: s.blobs, Embedder: e, Vectors: fresh, TempDir: t.TempDir()})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for run := 1; run <= 2; run++ {
		wf, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.ReembedWorkflowID(name), TaskQueue: queue},
			workflows.ReembedWorkflowName, workflows.ReembedInput{})
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.ReembedResult
		if err := wf.Get(ctx, &res); err != nil || res.Indexed != len(published) || res.Skipped != 0 {
			t.Fatalf("re-embed run %d: %+v %v, want %d indexed", run, res, err, len(published))
		}
		if n, err := fresh.Count(ctx); err != nil || n != len(published) {
			t.Fatalf("after re-embed run %d the new collection holds %d vectors (%v), want %d", run, n, err, len(published))
		}
		t.Logf("re-embed run %d into %s: %+v", run, name, res)
	}
	for _, id := range published {
		got, err := fresh.Get(ctx, id)
		if err != nil {
			t.Fatalf("re-embedded %s: %v", id, err)
		}
		old, _ := s.vectors.Get(ctx, id)
		var diff float64
		for i := range got.Vector {
			diff = max(diff, math.Abs(float64(got.Vector[i]-old.Vector[i])))
		}
		if len(got.Vector) != len(old.Vector) || diff > 1e-5 || got.Language != old.Language || got.Level != old.Level {
			t.Errorf("%s: re-embedded vector differs from the original by %g (%s/%d vs %s/%d)", id, diff, got.Language, got.Level, old.Language, old.Level)
		}
	}
	for _, id := range blocked {
		if _, err := fresh.Get(ctx, id); !errors.Is(err, vectorstore.ErrNotFound) {
			t.Errorf("blocked %s re-embedded: %v", id, err)
		}
	}
}
