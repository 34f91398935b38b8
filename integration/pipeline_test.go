package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/workflows"
)

// uploadAll uploads clips concurrently and waits for each video's final state.
func uploadAll(t *testing.T, s *stack, paths []string) map[string]map[string]any {
	t.Helper()
	ids := map[string]string{}
	for _, p := range paths {
		code, body := s.upload(appKey, lessonForm(p))
		if code != http.StatusAccepted {
			t.Fatalf("upload %s: %d %v", p, code, body)
		}
		ids[p] = body["id"].(string)
	}
	out := map[string]map[string]any{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := s.waitState(id, 5*time.Minute)
			mu.Lock()
			out[p] = v
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func decisionOf(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	d, ok := v["decision"].(map[string]any)
	if !ok {
		t.Fatalf("video %v has no decision", v["id"])
	}
	return d
}

// TestSharedClipsApproved: the four real safe clips end approved under the
// default policy, with versions recorded; their top scores are logged for the README.
func TestSharedClipsApproved(t *testing.T) {
	s := newStack(t, stackOptions{})
	var paths []string
	for _, name := range testenv.SharedVideos {
		paths = append(paths, testenv.SharedVideo(t, name))
	}
	for p, v := range uploadAll(t, s, paths) {
		d := decisionOf(t, v)
		scores, _ := json.Marshal(d["scores"])
		segs, _ := json.Marshal(d["segments"])
		t.Logf("%s: %s; signals %s; segments %s", p, v["state"], scores, segs)
		if v["state"] != "published" {
			t.Errorf("%s: state %s, want published (approved, then indexed): %s", p, v["state"], d["reason"])
		}
		if d["model_sha256"] != "07ec78967a475ced5369053a46fbd8272064b691be29fe70432890ef4cc950ca" {
			t.Errorf("%s: model sha256 %v not recorded", p, d["model_sha256"])
		}
		if d["policy_version"] == "" || d["sampler"] == nil {
			t.Errorf("%s: policy version or sampler missing: %v", p, d)
		}
		stages := map[string]bool{}
		for _, st := range v["stages"].([]any) {
			m := st.(map[string]any)
			if m["state"] != "succeeded" || m["finished_at"] == nil {
				t.Errorf("%s: stage %v", p, m)
			}
			stages[m["name"].(string)] = true
		}
		for _, want := range []string{"probe", "sample", "classify", "sample_dense", "decide"} {
			if !stages[want] {
				t.Errorf("%s: stage %s missing from %v", p, want, v["stages"])
			}
		}
		if m, ok := v["media"].(map[string]any); !ok || m["width"].(float64) == 0 || m["codec"] != "h264" {
			t.Errorf("%s: media not recorded: %v", p, v["media"])
		}
	}
}

// TestDrawingPolicyBlocksAnimatedClips exercises the block path on real model
// outputs with a policy that blocks a harmless label. Big Buck Bunny is not
// among them: the model scores every frame of it Neutral (0.87-0.98), which
// the test asserts too, so a change in preprocessing would show.
func TestDrawingPolicyBlocksAnimatedClips(t *testing.T) {
	s := newStack(t, stackOptions{policy: "test-block-drawing"})
	bbb := testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	bars := testenv.Clip(t, "smptebars-6s.mp4", "-f", "lavfi", "-i", "smptebars=size=640x360:rate=10:duration=6", "-c:v", "libx264", "-pix_fmt", "yuv420p")
	paths := []string{bbb, testenv.SharedVideo(t, "Sintel_1080_10s_2MB.mp4"), bars}
	for p, v := range uploadAll(t, s, paths) {
		d := decisionOf(t, v)
		if p == bbb {
			sig := d["scores"].(map[string]any)["drawing"].(map[string]any)
			if v["state"] != "published" || sig["max_raw"].(float64) > 0.2 {
				t.Errorf("Big Buck Bunny: %s, drawing %v (the model sees it as Neutral)", v["state"], sig)
			}
			continue
		}
		if v["state"] != "blocked" {
			t.Errorf("%s: state %s, want blocked: %s", p, v["state"], d["reason"])
			continue
		}
		// Decide finishes its stage in the same write as the state: a
		// blocked video never shows a decision still running.
		for _, st := range v["stages"].([]any) {
			if m := st.(map[string]any); m["name"] == "decide" && (m["state"] != "succeeded" || m["finished_at"] == nil) {
				t.Errorf("%s: blocked, but its decide stage is %v", p, m)
			}
		}
		segs := d["segments"].([]any)
		found := false
		for _, sg := range segs {
			m := sg.(map[string]any)
			if m["signal"] == "drawing" && m["action"] == "block" && m["end_ms"].(float64) > m["start_ms"].(float64) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no drawing block segment with a time range: %v", p, segs)
		}
	}
}

// TestDuplicateUploadReturnsExisting: the same bytes again answer 200 with the
// same id, start no second workflow and leave no second blob.
func TestDuplicateUploadReturnsExisting(t *testing.T) {
	s := newStack(t, stackOptions{})
	clip := testenv.Clip(t, "dup-testsrc2.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=3", "-c:v", "libx264", "-pix_fmt", "yuv420p")
	code, first := s.upload(appKey, lessonForm(clip))
	if code != http.StatusAccepted {
		t.Fatalf("first upload: %d %v", code, first)
	}
	id := first["id"].(string)
	code, again := s.upload(appKey, lessonForm(clip))
	if code != http.StatusOK || again["id"] != id {
		t.Fatalf("second upload while processing: %d %v (want 200, id %s)", code, again, id)
	}
	s.waitState(id, 2*time.Minute)
	code, third := s.upload(appKey, lessonForm(clip))
	if code != http.StatusOK || third["id"] != id || third["state"] != "published" {
		t.Fatalf("upload after the decision: %d %v", code, third)
	}
	if keys := s.blobKeys("uploads/"); len(keys) != 1 {
		t.Fatalf("want one stored upload, have %v", keys)
	}
	ds, err := s.catalog.Decisions(context.Background(), id)
	if err != nil || len(ds) != 1 {
		t.Fatalf("want one decision, have %d (%v)", len(ds), err)
	}
	// The workflow id is derived from the content: one execution exists.
	resp, err := s.temporal.DescribeWorkflowExecution(context.Background(), workflows.WorkflowID(id), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetWorkflowExecutionInfo().GetExecution().GetWorkflowId(); got != workflows.WorkflowID(id) {
		t.Fatalf("workflow %s", got)
	}
	iter := s.temporal.GetWorkflowHistory(context.Background(), workflows.WorkflowID(id), "", false, 0)
	starts := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetWorkflowExecutionStartedEventAttributes() != nil {
			starts++
		}
	}
	if starts != 1 {
		t.Fatalf("%d workflow starts", starts)
	}
}

func TestHistoryCarriesNoLargeData(t *testing.T) {
	s := newStack(t, stackOptions{})
	clip := testenv.SharedVideo(t, "car-detection.mp4")
	code, body := s.upload(appKey, lessonForm(clip))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	id := body["id"].(string)
	s.waitState(id, 3*time.Minute)
	iter := s.temporal.GetWorkflowHistory(context.Background(), workflows.WorkflowID(id), "", false, 0)
	total, largest := 0, 0
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		n := len(fmt.Sprint(ev))
		total += n
		largest = max(largest, n)
	}
	// 30 s of video: ~15 coarse frames. Frames or per-frame scores in history
	// would be hundreds of kB; references and summaries are a few kB.
	if largest > 8<<10 || total > 64<<10 {
		t.Fatalf("history too large: largest event %d bytes, total %d", largest, total)
	}
	t.Logf("history: %d bytes, largest event %d", total, largest)
}
