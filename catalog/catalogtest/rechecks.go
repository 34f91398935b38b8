package catalogtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/lessonflow/lessonflow/catalog"
)

// RecheckStore is a catalog that also keeps re-check batches.
type RecheckStore interface {
	catalog.Store
	catalog.RecheckStore
}

// RunRechecks runs the re-check part of the contract. newStore must return a
// new, empty store each time; RunRechecks closes it when the test ends.
func RunRechecks(t *testing.T, newStore func(t *testing.T) RecheckStore) {
	tests := []storeTest[RecheckStore]{
		{"BatchCreateGet", testBatchCreateGet},
		{"BatchFinish", testBatchFinish},
		{"ResultIdempotent", testResultIdempotent},
		{"ResultConcurrent", testResultConcurrent},
		{"ResultPages", testResultPages},
		{"ResultReviewItem", testResultReviewItem},
	}
	runTests(t, newStore, tests)
}

func sampleBatch(id string) catalog.RecheckBatch {
	return catalog.RecheckBatch{
		ID: id, PolicyVersion: "test-policy/1", PolicySHA256: "cd" + id, PolicyKey: "rechecks/policies/" + id + ".yaml",
		ModelID: "nsfw_mobilenet_v2_224", States: []catalog.State{catalog.StatePublished, catalog.StateApproved},
		RequestedBy: "admin", CreatedAt: base,
	}
}

func createBatch(t *testing.T, s RecheckStore, id string) catalog.RecheckBatch {
	t.Helper()
	b, created, err := s.CreateRecheckBatch(ctx, sampleBatch(id))
	if err != nil || !created {
		t.Fatalf("CreateRecheckBatch(%s) = %v, %v; want created", id, created, err)
	}
	return b
}

func testBatchCreateGet(t *testing.T, s RecheckStore) {
	got := createBatch(t, s, "rc1")
	want := sampleBatch("rc1")
	want.State, want.CreatedAt = catalog.RecheckRunning, us(base)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CreateRecheckBatch returned\n %+v\nwant\n %+v", got, want)
	}
	again, created, err := s.CreateRecheckBatch(ctx, catalog.RecheckBatch{ID: "rc1", PolicyVersion: "other", PolicyKey: "k"})
	if err != nil || created || !reflect.DeepEqual(again, got) {
		t.Fatalf("second CreateRecheckBatch = %+v, %v, %v; want the first, false", again, created, err)
	}
	if b, err := s.GetRecheckBatch(ctx, "rc1"); err != nil || !reflect.DeepEqual(b, got) {
		t.Fatalf("GetRecheckBatch = %+v, %v", b, err)
	}
	if _, err := s.GetRecheckBatch(ctx, "missing"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("GetRecheckBatch(missing) = %v, want ErrNotFound", err)
	}
	newer := sampleBatch("rc2")
	newer.CreatedAt = base.Add(2e9)
	if _, _, err := s.CreateRecheckBatch(ctx, newer); err != nil {
		t.Fatal(err)
	}
	if b, err := s.RecheckBatchByPolicy(ctx, "test-policy/1"); err != nil || b.ID != "rc2" {
		t.Fatalf("RecheckBatchByPolicy = %+v, %v; want rc2, the newest", b, err)
	}
	if _, err := s.RecheckBatchByPolicy(ctx, "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("RecheckBatchByPolicy(nope) = %v, want ErrNotFound", err)
	}
	for _, bad := range []catalog.RecheckBatch{
		{PolicyVersion: "p", PolicyKey: "k"},
		{ID: "x", PolicyKey: "k"},
		{ID: "x", PolicyVersion: "p", PolicyKey: "k", States: []catalog.State{"nonsense"}},
	} {
		if _, _, err := s.CreateRecheckBatch(ctx, bad); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("CreateRecheckBatch(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func testBatchFinish(t *testing.T, s RecheckStore) {
	createBatch(t, s, "rc1")
	if err := s.FinishRecheckBatch(ctx, "rc1", "bogus", ""); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("FinishRecheckBatch(bogus) = %v, want ErrInvalid", err)
	}
	if err := s.FinishRecheckBatch(ctx, "missing", catalog.RecheckCompleted, ""); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("FinishRecheckBatch(missing) = %v, want ErrNotFound", err)
	}
	if err := s.FinishRecheckBatch(ctx, "rc1", catalog.RecheckFailed, "model missing"); err != nil {
		t.Fatal(err)
	}
	b, err := s.GetRecheckBatch(ctx, "rc1")
	if err != nil || b.State != catalog.RecheckFailed || b.Error != "model missing" || b.FinishedAt == nil {
		t.Fatalf("finished batch = %+v, %v", b, err)
	}
}

func sampleResult(batch, video string, changed bool) catalog.RecheckResult {
	return catalog.RecheckResult{
		BatchID: batch, VideoID: video, VideoState: catalog.StateApproved,
		OldOutcome: "approved", OldPolicyVersion: "default/1", OldModelSHA256: "aa",
		NewOutcome: map[bool]string{true: "blocked", false: "approved"}[changed], NewReason: "a reason",
		ModelID: "m", ModelSHA256: "bb", PolicyVersion: "test-policy/1", Changed: changed, Frames: catalog.FramesStored,
		Segments: json.RawMessage(`[{"signal":"drawing","start_ms":1000}]`), Scores: json.RawMessage(`{"drawing":{"max_raw":0.5}}`),
		CreatedAt: base,
	}
}

func testResultIdempotent(t *testing.T, s RecheckStore) {
	createBatch(t, s, "rc1")
	create(t, s, sampleVideo("v1"))
	in := sampleResult("rc1", "v1", true)
	got, created, err := s.RecordRecheckResult(ctx, in)
	if err != nil || !created {
		t.Fatalf("RecordRecheckResult = %v, %v", created, err)
	}
	want := in
	want.Seq, want.CreatedAt = 1, us(base)
	if !sameJSON(got.Segments, want.Segments) || !sameJSON(got.Scores, want.Scores) {
		t.Fatalf("JSON fields changed: %s %s", got.Segments, got.Scores)
	}
	got.Segments, got.Scores, want.Segments, want.Scores = nil, nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RecordRecheckResult returned\n %+v\nwant\n %+v", got, want)
	}
	if r, err := s.GetRecheckResult(ctx, "rc1", "v1"); err != nil || r.Seq != 1 || !r.Changed {
		t.Fatalf("GetRecheckResult = %+v, %v", r, err)
	}
	if _, err := s.GetRecheckResult(ctx, "rc1", "v2"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("GetRecheckResult(missing) = %v, want ErrNotFound", err)
	}
	// A retry with another verdict keeps the first.
	again, created, err := s.RecordRecheckResult(ctx, sampleResult("rc1", "v1", false))
	if err != nil || created || !again.Changed || again.NewOutcome != "blocked" {
		t.Fatalf("retried RecordRecheckResult = %+v, %v, %v; want the first verdict", again, created, err)
	}
	if _, _, err := s.RecordRecheckResult(ctx, sampleResult("rc1", "missing", true)); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("result for a missing video = %v, want ErrNotFound", err)
	}
	if _, _, err := s.RecordRecheckResult(ctx, sampleResult("nobatch", "v1", true)); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("result for a missing batch = %v, want ErrNotFound", err)
	}
	bad := sampleResult("rc1", "v1", true)
	bad.Segments = json.RawMessage(`{`)
	if _, _, err := s.RecordRecheckResult(ctx, bad); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("bad JSON = %v, want ErrInvalid", err)
	}
}

func testResultConcurrent(t *testing.T, s RecheckStore) {
	createBatch(t, s, "rc1")
	for i := range 4 {
		create(t, s, sampleVideo(fmt.Sprintf("v%d", i)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.RecordRecheckResult(ctx, sampleResult("rc1", fmt.Sprintf("v%d", i%4), i%2 == 0))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rs, _, err := s.RecheckResults(ctx, catalog.RecheckResultQuery{BatchID: "rc1"})
	if err != nil || len(rs) != 4 {
		t.Fatalf("%d results, %v; want 4 (one per video)", len(rs), err)
	}
	for i, r := range rs {
		if r.Seq != int64(i+1) {
			t.Fatalf("seqs %v: want 1..4", rs)
		}
	}
}

func testResultPages(t *testing.T, s RecheckStore) {
	createBatch(t, s, "rc1")
	createBatch(t, s, "rc2")
	for i := range 7 {
		id := fmt.Sprintf("v%d", i)
		create(t, s, sampleVideo(id))
		r := sampleResult("rc1", id, i%3 == 0)
		if i == 5 {
			r.Error, r.NewOutcome = "no frames and no upload", ""
		}
		if _, _, err := s.RecordRecheckResult(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.RecordRecheckResult(ctx, sampleResult("rc2", "v1", true)); err != nil {
		t.Fatal(err)
	}
	collect := func(q catalog.RecheckResultQuery) []string {
		var ids []string
		for {
			rs, next, err := s.RecheckResults(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				ids = append(ids, r.VideoID)
			}
			if next == "" {
				return ids
			}
			q.Cursor = next
		}
	}
	if got := collect(catalog.RecheckResultQuery{BatchID: "rc1", Limit: 3}); fmt.Sprint(got) != "[v0 v1 v2 v3 v4 v5 v6]" {
		t.Fatalf("all results in pages of 3: %v", got)
	}
	if got := collect(catalog.RecheckResultQuery{BatchID: "rc1", Limit: 1, ChangedOnly: true}); fmt.Sprint(got) != "[v0 v3 v6]" {
		t.Fatalf("changed results: %v", got)
	}
	c, err := s.RecheckCounts(ctx, "rc1")
	if err != nil || c != (catalog.RecheckCounts{Processed: 7, Changed: 3, Errors: 1}) {
		t.Fatalf("RecheckCounts = %+v, %v", c, err)
	}
	if _, _, err := s.RecheckResults(ctx, catalog.RecheckResultQuery{BatchID: "rc1", Cursor: "junk!"}); !errors.Is(err, catalog.ErrBadCursor) {
		t.Fatalf("bad cursor = %v, want ErrBadCursor", err)
	}
	if _, _, err := s.RecheckResults(ctx, catalog.RecheckResultQuery{BatchID: "missing"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("results of a missing batch = %v, want ErrNotFound", err)
	}
	if _, err := s.RecheckCounts(ctx, "missing"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("counts of a missing batch = %v, want ErrNotFound", err)
	}
}

func testResultReviewItem(t *testing.T, s RecheckStore) {
	createBatch(t, s, "rc1")
	create(t, s, sampleVideo("v1"))
	if _, _, err := s.RecordRecheckResult(ctx, sampleResult("rc1", "v1", true)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRecheckReviewItem(ctx, "rc1", "v2", "ri1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("SetRecheckReviewItem(no result) = %v, want ErrNotFound", err)
	}
	if err := s.SetRecheckReviewItem(ctx, "rc1", "v1", ""); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("SetRecheckReviewItem(empty) = %v, want ErrInvalid", err)
	}
	for range 2 { // idempotent
		if err := s.SetRecheckReviewItem(ctx, "rc1", "v1", "ri1"); err != nil {
			t.Fatal(err)
		}
	}
	rs, _, err := s.RecheckResults(ctx, catalog.RecheckResultQuery{BatchID: "rc1"})
	if err != nil || len(rs) != 1 || rs[0].ReviewItemID != "ri1" {
		t.Fatalf("results = %+v, %v", rs, err)
	}
	if c, _ := s.RecheckCounts(ctx, "rc1"); c.SentToReview != 1 {
		t.Fatalf("counts %+v: want 1 sent to review", c)
	}
}
