package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/recheck"
)

// postJSON sends a JSON body.
func (s *stack) postJSON(key, path string, body any) (int, map[string]any) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", s.api.URL+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	return s.do(key, req)
}

// waitPublished polls until the video is published (approved, then indexed).
func (s *stack) waitPublished(id string) {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		_, v := s.get(adminKey, "/v1/videos/"+id)
		if v["state"] == "published" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("video %s is %v (%v), want published", id, v["state"], v["error"])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runRecheck starts a batch through the API and waits for it to end.
func (s *stack) runRecheck(body map[string]any) (string, map[string]any) {
	s.t.Helper()
	code, started := s.postJSON(adminKey, "/v1/admin/rechecks", body)
	if code != http.StatusAccepted {
		s.t.Fatalf("start re-check: %d %v", code, started)
	}
	id := started["id"].(string)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		code, st := s.get(adminKey, "/v1/admin/rechecks/"+id)
		if code != http.StatusOK {
			s.t.Fatalf("re-check %s: %d %v", id, code, st)
		}
		if st["state"] != "running" {
			return id, st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("re-check %s still running: %v", id, st["progress"])
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (s *stack) recheckResults(id, query string) []map[string]any {
	s.t.Helper()
	code, body := s.get(adminKey, "/v1/admin/rechecks/"+id+"/results"+query)
	if code != http.StatusOK {
		s.t.Fatalf("results of %s: %d %v", id, code, body)
	}
	var out []map[string]any
	for _, it := range body["items"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}

// TestRecheckFindsPolicyDiff: two published clips, re-checked in shadow
// under the default policy (nothing changes: the stored frames and scores are
// re-used) and then under a policy that blocks the harmless Drawing label:
// Sintel's verdict changes to blocked and goes to review as a recheck item,
// Big Buck Bunny's does not; neither video is touched. A batch size of one
// video per run makes the workflow continue as new between videos.
func TestRecheckFindsPolicyDiff(t *testing.T) {
	s := newStack(t, stackOptions{})
	sintel := testenv.SharedVideo(t, "Sintel_1080_10s_2MB.mp4")
	bbb := testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	videos := uploadAll(t, s, []string{sintel, bbb})
	sintelID, bbbID := videos[sintel]["id"].(string), videos[bbb]["id"].(string)
	s.waitPublished(sintelID)
	s.waitPublished(bbbID)
	before := map[string]int{}
	for _, id := range []string{sintelID, bbbID} {
		_, body := s.get(adminKey, "/v1/videos/"+id+"/decisions")
		before[id] = len(body["items"].([]any))
	}

	// Same policy, same model: nothing changes, and no frame is classified again.
	id, st := s.runRecheck(map[string]any{"policy": "default", "page_size": 1, "run_size": 1})
	p := st["progress"].(map[string]any)
	if st["state"] != "completed" || p["processed"] != 2.0 || p["changed"] != 0.0 || p["sent_to_review"] != 0.0 {
		t.Fatalf("default re-check: %v", st)
	}
	for _, r := range s.recheckResults(id, "") {
		if r["frames"] != "stored" || r["new_outcome"] != "approved" || r["changed"] != false {
			t.Errorf("default re-check of %s: %v", r["video_id"], r)
		}
	}

	// The Drawing policy, sent as text the way the CLI sends a file.
	policyText := string(testenv.ReadFile(t, testenv.RepoRoot()+"/moderation/policies/test-block-drawing.yaml"))
	id, st = s.runRecheck(map[string]any{"policy_yaml": policyText, "page_size": 1, "run_size": 1})
	p = st["progress"].(map[string]any)
	t.Logf("drawing re-check %s: %v", id, st)
	if st["state"] != "completed" || p["done"] != true || p["processed"] != 2.0 || p["changed"] != 1.0 ||
		p["sent_to_review"] != 1.0 || p["errors"] != 0.0 || p["skipped"] != 0.0 {
		t.Fatalf("drawing re-check: %v", st)
	}
	if runs := p["runs"].(float64); runs < 2 {
		t.Fatalf("the batch ran in %v workflow run(s); one video per run must continue as new", runs)
	}
	desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), recheck.WorkflowID(id), "")
	if err != nil {
		t.Fatal(err)
	}
	if info := desc.GetWorkflowExecutionInfo(); info.GetFirstRunId() == info.GetExecution().GetRunId() {
		t.Fatal("the workflow never continued as new")
	}

	changed := s.recheckResults(id, "?changed=true")
	if len(changed) != 1 {
		t.Fatalf("changed results: %v", changed)
	}
	r := changed[0]
	if r["video_id"] != sintelID || r["old_outcome"] != "approved" || r["new_outcome"] != "blocked" ||
		r["video_state"] != "published" || r["review_item_id"] == "" || r["policy_version"] != "test-block-drawing/2026-11-21.3" {
		t.Fatalf("Sintel's diff: %v", r)
	}
	segs, _ := r["segments"].([]any)
	if len(segs) == 0 || segs[0].(map[string]any)["signal"] != "drawing" {
		t.Fatalf("Sintel's new segments: %v", r["segments"])
	}
	t.Logf("Sintel re-checked from %s frames: %v", r["frames"], r["new_reason"])
	all := s.recheckResults(id, "")
	for _, x := range all {
		if x["video_id"] == bbbID && (x["changed"] != false || x["new_outcome"] != "approved" || x["review_item_id"] != "") {
			t.Fatalf("Big Buck Bunny's result: %v", x)
		}
	}
	// Frames sampled again are kept only as evidence of a change.
	if keys := s.blobKeys(recheck.ShadowPrefix(id, bbbID)); len(keys) != 0 {
		t.Errorf("shadow frames of an unchanged video kept: %v", keys)
	}

	// The review item: kind recheck, in the queue, saying what changed.
	itemID := r["review_item_id"].(string)
	var item map[string]any
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := s.get(reviewerKey, "/v1/review/items/"+itemID)
		if code == http.StatusOK {
			item = body
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("review item %s: %d %v", itemID, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ev, _ := item["evidence"].(map[string]any)
	if item["kind"] != "recheck" || item["video_id"] != sintelID || item["state"] != "pending" ||
		!strings.Contains(item["reason"].(string), "blocked") || !strings.Contains(ev["diff"].(string), "drawing") {
		t.Fatalf("review item: %v", item)
	}

	// A re-check never changes a video: same state, same decision log.
	for _, vid := range []string{sintelID, bbbID} {
		_, v := s.get(adminKey, "/v1/videos/"+vid)
		_, body := s.get(adminKey, "/v1/videos/"+vid+"/decisions")
		if v["state"] != "published" || len(body["items"].([]any)) != before[vid] {
			t.Errorf("%s changed by the re-check: %s, %d decisions (was %d)", vid, v["state"], len(body["items"].([]any)), before[vid])
		}
	}
	// Without the upload, the stored frames still serve: the coarse pass as
	// it is, dense frames only where stored ones cover the new windows.
	ctx := context.Background()
	sv, err := s.catalog.GetVideo(ctx, sintelID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.blobs.Delete(ctx, sv.BlobKey); err != nil {
		t.Fatal(err)
	}
	id, st = s.runRecheck(map[string]any{"policy_yaml": policyText, "states": []string{"published"}})
	for _, r := range s.recheckResults(id, "") {
		if r["video_id"] == sintelID {
			t.Logf("Sintel without its upload: %s from %s frames", r["new_outcome"], r["frames"])
			if r["error"] != "" || (r["frames"] != "stored" && r["frames"] != "partial") || r["new_outcome"] == "" {
				t.Fatalf("Sintel without its upload: %v", r)
			}
		}
	}
	// With the frames gone too, nothing is left to classify: the video's
	// result records why, and the batch goes on with the others.
	if err := s.blobs.DeletePrefix(ctx, "frames/"+sintelID+"/"); err != nil {
		t.Fatal(err)
	}
	id, st = s.runRecheck(map[string]any{"policy_yaml": policyText, "states": []string{"published"}})
	p = st["progress"].(map[string]any)
	if st["state"] != "completed" || p["processed"] != 2.0 || p["errors"] != 1.0 {
		t.Fatalf("re-check without frames or upload: %v", st)
	}
	for _, r := range s.recheckResults(id, "") {
		if r["video_id"] == sintelID && !strings.Contains(r["error"].(string), "upload is gone") {
			t.Fatalf("Sintel without frames or upload: %v", r)
		}
	}

	// The batch's policy is readable by reviewers, as sent.
	code, pol := s.get(reviewerKey, "/v1/review/policy?version=test-block-drawing/2026-11-21.3")
	if code != http.StatusOK || pol["version"] != "test-block-drawing/2026-11-21.3" {
		t.Fatalf("policy by version: %d %v", code, pol)
	}
}
