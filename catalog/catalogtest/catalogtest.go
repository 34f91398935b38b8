// Package catalogtest is the contract every catalog.Store must pass, like the
// conformance suites of database/sql drivers. A backend's test calls Run with
// a constructor of fresh, empty stores.
package catalogtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
)

// Run runs the contract suite. newStore must return a new, empty store each
// time it is called; Run closes it when the test ends.
func Run(t *testing.T, newStore func(t *testing.T) catalog.Store) {
	tests := []storeTest[catalog.Store]{
		{"CreateGet", testCreateGet},
		{"CreateIdempotent", testCreateIdempotent},
		{"CreateConcurrent", testCreateConcurrent},
		{"SetMedia", testSetMedia},
		{"SetState", testSetState},
		{"ConcludeStage", testConcludeStage},
		{"Stages", testStages},
		{"ListPagination", testListPagination},
		{"ListFilter", testListFilter},
		{"ListLimit", testListLimit},
		{"BadCursor", testBadCursor},
		{"Decisions", testDecisions},
		{"DecisionIdempotent", testDecisionIdempotent},
		{"DecisionConcurrent", testDecisionConcurrent},
		{"DeleteVideo", testDeleteVideo},
		{"BlobKeyInUse", testBlobKeyInUse},
		{"Close", testClose},
	}
	tests = append(tests, eventTests...)
	tests = append(tests, reviewTests...)
	tests = append(tests, registryTests...)
	runTests(t, newStore, tests)
}

// storeTest is one named test of a suite over stores of type S.
type storeTest[S any] struct {
	name string
	fn   func(t *testing.T, s S)
}

// runTests runs each test as a subtest on a new store from newStore and
// closes the store when the subtest ends.
func runTests[S interface{ Close() error }](t *testing.T, newStore func(t *testing.T) S, tests []storeTest[S]) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// as adapts a test of an interface a backend must also implement, failing
// for a store that does not.
func as[I any](fn func(t *testing.T, s catalog.Store, x I)) func(t *testing.T, s catalog.Store) {
	return func(t *testing.T, s catalog.Store) {
		x, ok := s.(I)
		if !ok {
			t.Fatalf("%T does not implement %v", s, reflect.TypeFor[I]())
		}
		fn(t, s, x)
	}
}

var ctx = context.Background()

// base is a fixed instant with sub-microsecond digits, which every store
// must drop.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("X", 3600))

func us(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func sampleVideo(id string) catalog.Video {
	return catalog.Video{
		ID:          id,
		SHA256:      strings.Repeat("ab", 32),
		Title:       "Fractions, part " + id,
		Description: "Adding fractions with unlike denominators.",
		Level:       3,
		Language:    "en",
		Tags:        []string{"math", "fractions"},
		TeacherID:   "teacher-1",
		BlobKey:     "uploads/" + id + "/source",
		SizeBytes:   2 << 20,
		CreatedAt:   base,
	}
}

func create(t *testing.T, s catalog.Store, v catalog.Video) catalog.Video {
	t.Helper()
	got, created, err := s.CreateVideo(ctx, v)
	if err != nil {
		t.Fatalf("CreateVideo(%s): %v", v.ID, err)
	}
	if !created {
		t.Fatalf("CreateVideo(%s): created = false for a new video", v.ID)
	}
	return got
}

func get(t *testing.T, s catalog.Store, id string) catalog.Video {
	t.Helper()
	v, err := s.GetVideo(ctx, id)
	if err != nil {
		t.Fatalf("GetVideo(%s): %v", id, err)
	}
	return v
}

func testCreateGet(t *testing.T, s catalog.Store) {
	in := sampleVideo("v1")
	in.State = catalog.StateApproved // ignored: new videos are processing
	in.Error = "ignored"
	in.Stages = []catalog.Stage{{Name: "ignored"}}
	got := create(t, s, in)
	want := in
	want.State = catalog.StateProcessing
	want.Error = ""
	want.Stages = []catalog.Stage{}
	want.CreatedAt = us(base)
	want.UpdatedAt = got.UpdatedAt
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CreateVideo returned\n %+v\nwant\n %+v", got, want)
	}
	if got.CreatedAt.Location() != time.UTC || got.UpdatedAt.Before(got.CreatedAt) {
		t.Fatalf("times: created %v updated %v, want UTC and updated >= created", got.CreatedAt, got.UpdatedAt)
	}
	if again := get(t, s, "v1"); !reflect.DeepEqual(again, got) {
		t.Fatalf("GetVideo\n %+v\nwant\n %+v", again, got)
	}

	// Defaults: no tags, no time, no media.
	before := time.Now().Add(-time.Second)
	bare := create(t, s, catalog.Video{ID: "v2"})
	if bare.Tags == nil || len(bare.Tags) != 0 || bare.Media != nil || bare.Stages == nil {
		t.Fatalf("bare video: tags %#v media %v stages %#v, want [] nil []", bare.Tags, bare.Media, bare.Stages)
	}
	if bare.CreatedAt.Before(before) || bare.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("zero CreatedAt became %v, want about now", bare.CreatedAt)
	}

	if _, err := s.GetVideo(ctx, "missing"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("GetVideo(missing) = %v, want ErrNotFound", err)
	}
	if _, _, err := s.CreateVideo(ctx, catalog.Video{}); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("CreateVideo(no id) = %v, want ErrInvalid", err)
	}
}

func testCreateIdempotent(t *testing.T, s catalog.Store) {
	first := create(t, s, sampleVideo("v1"))
	if err := s.SetState(ctx, "v1", catalog.StateNeedsReview, "score 0.7"); err != nil {
		t.Fatal(err)
	}
	first = get(t, s, "v1")
	retry := sampleVideo("v1")
	retry.Title = "a different title"
	got, created, err := s.CreateVideo(ctx, retry)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Fatal("CreateVideo of an existing id: created = true")
	}
	if !reflect.DeepEqual(got, first) {
		t.Fatalf("CreateVideo of an existing id returned\n %+v\nwant the stored\n %+v", got, first)
	}
}

func testCreateConcurrent(t *testing.T, s catalog.Store) {
	const n = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		errs    []error
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, c, err := s.CreateVideo(ctx, sampleVideo("race"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if c {
				created++
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 || created != 1 {
		t.Fatalf("%d concurrent CreateVideo: %d created, errors %v; want exactly 1 and none", n, created, errs)
	}
}

func testSetMedia(t *testing.T, s catalog.Store) {
	create(t, s, sampleVideo("v1"))
	info := media.Info{Format: "mov,mp4,m4a,3gp,3g2,mj2", DurationMS: 10_000, Width: 1920, Height: 1080, FPS: 29.97,
		Codec: "h264", PixFmt: "yuv420p", BitRate: 1_600_000, HasAudio: true, AudioCodec: "aac"}
	if err := s.SetMedia(ctx, "v1", info); err != nil {
		t.Fatal(err)
	}
	v := get(t, s, "v1")
	if v.Media == nil || *v.Media != info {
		t.Fatalf("Media = %+v, want %+v", v.Media, info)
	}
	if v.UpdatedAt.Before(v.CreatedAt) {
		t.Fatalf("UpdatedAt %v before CreatedAt %v", v.UpdatedAt, v.CreatedAt)
	}
	if err := s.SetMedia(ctx, "missing", info); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("SetMedia(missing) = %v, want ErrNotFound", err)
	}
}

func testSetState(t *testing.T, s catalog.Store) {
	v := create(t, s, sampleVideo("v1"))
	if err := s.SetState(ctx, "v1", catalog.StateRejectedInvalid, "not a video: audio only"); err != nil {
		t.Fatal(err)
	}
	got := get(t, s, "v1")
	if got.State != catalog.StateRejectedInvalid || got.Error != "not a video: audio only" {
		t.Fatalf("after SetState: %s %q", got.State, got.Error)
	}
	if got.UpdatedAt.Before(v.UpdatedAt) {
		t.Fatalf("UpdatedAt went back: %v < %v", got.UpdatedAt, v.UpdatedAt)
	}
	// Setting the same state again (a retried activity) is fine; an empty
	// reason clears the error.
	for range 2 {
		if err := s.SetState(ctx, "v1", catalog.StateApproved, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := get(t, s, "v1"); got.State != catalog.StateApproved || got.Error != "" {
		t.Fatalf("after SetState(approved): %s %q", got.State, got.Error)
	}
	if err := s.SetState(ctx, "missing", catalog.StateApproved, ""); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("SetState(missing) = %v, want ErrNotFound", err)
	}
	if err := s.SetState(ctx, "v1", "bogus", ""); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("SetState(bogus) = %v, want ErrInvalid", err)
	}
	for _, st := range catalog.States {
		if err := s.SetState(ctx, "v1", st, ""); err != nil {
			t.Fatalf("SetState(%s): %v", st, err)
		}
		if got := get(t, s, "v1").State; got != st {
			t.Fatalf("State = %s, want %s", got, st)
		}
	}
}

func tp(t time.Time) *time.Time { t = us(t); return &t }

func testStages(t *testing.T, s catalog.Store) {
	create(t, s, sampleVideo("v1"))
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	steps := []func() error{
		func() error { return s.StageStarted(ctx, "v1", "probe", at(1)) },
		func() error { return s.StageFinished(ctx, "v1", "probe", at(2), catalog.StageSucceeded, "") },
		func() error { return s.StageStarted(ctx, "v1", "sample", at(3)) },
		func() error {
			return s.StageFinished(ctx, "v1", "sample", at(4), catalog.StageFailed, "ffmpeg: killed")
		},
		// A retry: attempt 2, the failure cleared while it runs.
		func() error { return s.StageStarted(ctx, "v1", "sample", at(5)) },
		// A stage that never starts.
		func() error { return s.StageFinished(ctx, "v1", "dense", at(6), catalog.StageSkipped, "") },
		func() error { return s.StageStarted(ctx, "v1", "classify", at(7)) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []catalog.Stage{
		{Name: "probe", State: catalog.StageSucceeded, StartedAt: tp(at(1)), FinishedAt: tp(at(2)), Attempts: 1},
		{Name: "sample", State: catalog.StageRunning, StartedAt: tp(at(5)), Attempts: 2},
		{Name: "dense", State: catalog.StageSkipped, FinishedAt: tp(at(6))},
		{Name: "classify", State: catalog.StageRunning, StartedAt: tp(at(7)), Attempts: 1},
	}
	if got := get(t, s, "v1").Stages; !reflect.DeepEqual(got, want) {
		t.Fatalf("Stages\n %s\nwant\n %s", stagesString(got), stagesString(want))
	}

	if err := s.StageFinished(ctx, "v1", "sample", at(8), catalog.StageSucceeded, ""); err != nil {
		t.Fatal(err)
	}
	want[1] = catalog.Stage{Name: "sample", State: catalog.StageSucceeded, StartedAt: tp(at(5)), FinishedAt: tp(at(8)), Attempts: 2}
	if got := get(t, s, "v1").Stages; !reflect.DeepEqual(got, want) {
		t.Fatalf("Stages\n %s\nwant\n %s", stagesString(got), stagesString(want))
	}

	// A zero time means now.
	if err := s.StageStarted(ctx, "v1", "decide", time.Time{}); err != nil {
		t.Fatal(err)
	}
	st := get(t, s, "v1").Stages
	if last := st[len(st)-1]; last.Name != "decide" || last.StartedAt == nil || time.Since(*last.StartedAt) > time.Minute {
		t.Fatalf("decide stage = %+v, want started about now", last)
	}

	if err := s.StageStarted(ctx, "missing", "probe", at(1)); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("StageStarted(missing video) = %v, want ErrNotFound", err)
	}
	if err := s.StageFinished(ctx, "missing", "probe", at(1), catalog.StageSucceeded, ""); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("StageFinished(missing video) = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{catalog.StageRunning, "", "done"} {
		if err := s.StageFinished(ctx, "v1", "probe", at(1), bad, ""); !errors.Is(err, catalog.ErrInvalid) {
			t.Fatalf("StageFinished(state %q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := s.StageStarted(ctx, "v1", "", at(1)); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("StageStarted(no name) = %v, want ErrInvalid", err)
	}
	// Stages belong to their video.
	create(t, s, sampleVideo("v2"))
	if got := get(t, s, "v2").Stages; len(got) != 0 {
		t.Fatalf("v2 stages = %s, want none", stagesString(got))
	}
}

func stagesString(st []catalog.Stage) string {
	var b strings.Builder
	f := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Format(time.RFC3339Nano)
	}
	for _, s := range st {
		fmt.Fprintf(&b, "{%s %s start=%s finish=%s err=%q attempts=%d} ", s.Name, s.State, f(s.StartedAt), f(s.FinishedAt), s.Error, s.Attempts)
	}
	return b.String()
}

// createSeven creates v0..v6; v3 and v4 share a creation time, so order
// falls back to id. It returns their ids newest first.
func createSeven(t *testing.T, s catalog.Store) []string {
	offsets := []int{0, 1, 2, 3, 3, 5, 6}
	for i, off := range offsets {
		v := sampleVideo(fmt.Sprintf("v%d", i))
		v.CreatedAt = base.Add(time.Duration(off) * time.Minute)
		create(t, s, v)
	}
	return []string{"v6", "v5", "v4", "v3", "v2", "v1", "v0"}
}

// walk lists every page and returns the ids and page sizes.
func walk(t *testing.T, s catalog.Store, q catalog.ListQuery) (ids []string, sizes []int) {
	t.Helper()
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
		vs, next, err := s.ListVideos(ctx, q)
		if err != nil {
			t.Fatalf("ListVideos(%+v): %v", q, err)
		}
		sizes = append(sizes, len(vs))
		for _, v := range vs {
			ids = append(ids, v.ID)
			if v.Stages == nil || v.Tags == nil {
				t.Fatalf("listed video %s has nil stages or tags", v.ID)
			}
		}
		if next == "" {
			return ids, sizes
		}
		q.Cursor = next
	}
}

func testListPagination(t *testing.T, s catalog.Store) {
	if vs, next, err := s.ListVideos(ctx, catalog.ListQuery{}); err != nil || len(vs) != 0 || next != "" {
		t.Fatalf("ListVideos on an empty store = %v, %q, %v", vs, next, err)
	}
	want := createSeven(t, s)
	ids, sizes := walk(t, s, catalog.ListQuery{Limit: 3})
	if !reflect.DeepEqual(ids, want) {
		t.Fatalf("walked %v, want %v", ids, want)
	}
	if !reflect.DeepEqual(sizes, []int{3, 3, 1}) {
		t.Fatalf("page sizes %v, want [3 3 1]", sizes)
	}
	// An exact multiple ends without an empty page.
	_, sizes = walk(t, s, catalog.ListQuery{Limit: 7})
	if !reflect.DeepEqual(sizes, []int{7}) {
		t.Fatalf("page sizes with limit 7: %v, want [7]", sizes)
	}
	// Listed videos carry their stages.
	if err := s.StageStarted(ctx, "v5", "probe", base); err != nil {
		t.Fatal(err)
	}
	vs, _, err := s.ListVideos(ctx, catalog.ListQuery{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || len(vs[0].Stages) != 0 || len(vs[1].Stages) != 1 || vs[1].Stages[0].Name != "probe" {
		t.Fatalf("first page: %+v", vs)
	}
	// A video created while walking, newer than the cursor, is not repeated
	// or interleaved: keyset pagination is stable under inserts.
	_, next, err := s.ListVideos(ctx, catalog.ListQuery{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	late := sampleVideo("v7")
	late.CreatedAt = base.Add(time.Hour)
	create(t, s, late)
	ids, _ = walk(t, s, catalog.ListQuery{Limit: 3, Cursor: next})
	if !reflect.DeepEqual(ids, want[3:]) {
		t.Fatalf("after an insert, the rest of the walk is %v, want %v", ids, want[3:])
	}
}

func testListFilter(t *testing.T, s catalog.Store) {
	createSeven(t, s)
	for _, id := range []string{"v1", "v3", "v4", "v6"} {
		if err := s.SetState(ctx, id, catalog.StateApproved, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetState(ctx, "v2", catalog.StateBlocked, "nudity"); err != nil {
		t.Fatal(err)
	}
	ids, sizes := walk(t, s, catalog.ListQuery{State: catalog.StateApproved, Limit: 3})
	if want := []string{"v6", "v4", "v3", "v1"}; !reflect.DeepEqual(ids, want) || !reflect.DeepEqual(sizes, []int{3, 1}) {
		t.Fatalf("approved: %v in pages %v, want %v in [3 1]", ids, sizes, want)
	}
	ids, _ = walk(t, s, catalog.ListQuery{State: catalog.StateProcessing, Limit: 1})
	if want := []string{"v5", "v0"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("processing: %v, want %v", ids, want)
	}
	ids, _ = walk(t, s, catalog.ListQuery{State: catalog.StatePublished})
	if len(ids) != 0 {
		t.Fatalf("published: %v, want none", ids)
	}
	if _, _, err := s.ListVideos(ctx, catalog.ListQuery{State: "bogus"}); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("ListVideos(state bogus) = %v, want ErrInvalid", err)
	}
}

func testListLimit(t *testing.T, s catalog.Store) {
	const n = catalog.MaxLimit + 5
	for i := range n {
		v := catalog.Video{ID: fmt.Sprintf("v%04d", i), CreatedAt: base.Add(time.Duration(i) * time.Second)}
		create(t, s, v)
	}
	for _, tc := range []struct{ limit, want int }{
		{0, catalog.DefaultLimit}, {-1, catalog.DefaultLimit}, {1, 1}, {catalog.MaxLimit, catalog.MaxLimit}, {10_000, catalog.MaxLimit},
	} {
		vs, next, err := s.ListVideos(ctx, catalog.ListQuery{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != tc.want || next == "" {
			t.Fatalf("Limit %d: %d videos, next %q; want %d and a cursor", tc.limit, len(vs), next, tc.want)
		}
	}
}

func testBadCursor(t *testing.T, s catalog.Store) {
	createSeven(t, s)
	for _, c := range []string{"!!!", "not a cursor", "Zm9v" /* "foo" */, "MTIzfA" /* "123|" */, "YWJjfHYx" /* "abc|v1" */} {
		if _, _, err := s.ListVideos(ctx, catalog.ListQuery{Cursor: c}); !errors.Is(err, catalog.ErrBadCursor) {
			t.Errorf("ListVideos(cursor %q) = %v, want ErrBadCursor", c, err)
		}
	}
}

func sampleDecision(videoID, key string) catalog.Decision {
	sampler := media.DefaultSampler
	return catalog.Decision{
		VideoID:       videoID,
		Key:           key,
		Actor:         "model",
		Outcome:       "approved",
		Reason:        "max nsfw score 0.02 below 0.5",
		ModelID:       "nsfw_mobilenet_v2_224",
		ModelSHA256:   strings.Repeat("cd", 32),
		PolicyVersion: "2025-03-01",
		Sampler:       &sampler,
		Segments:      json.RawMessage(`[{"start_ms": 0, "end_ms": 1500, "label": "ok"}]`),
		Scores:        json.RawMessage(`{"max": 0.02, "frames": [0.01, 0.02]}`),
		CreatedAt:     base,
	}
}

// sameJSON compares JSON by value: a backend may reformat it (jsonb does).
func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func checkDecision(t *testing.T, got, want catalog.Decision) {
	t.Helper()
	if !sameJSON(got.Segments, want.Segments) || !sameJSON(got.Scores, want.Scores) {
		t.Fatalf("decision JSON: segments %s scores %s, want %s %s", got.Segments, got.Scores, want.Segments, want.Scores)
	}
	got.Segments, got.Scores, want.Segments, want.Scores = nil, nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decision\n %+v\nwant\n %+v", got, want)
	}
}

func testDecisions(t *testing.T, s catalog.Store) {
	create(t, s, sampleVideo("v1"))
	create(t, s, sampleVideo("v2"))
	if ds, err := s.Decisions(ctx, "v1"); err != nil || ds == nil || len(ds) != 0 {
		t.Fatalf("Decisions of a fresh video = %#v, %v; want empty", ds, err)
	}

	d1 := sampleDecision("v1", "run-1/decide")
	got1, created, err := s.AppendDecision(ctx, d1)
	if err != nil || !created {
		t.Fatalf("AppendDecision = %v, %v", created, err)
	}
	if got1.Seq <= 0 {
		t.Fatalf("Seq = %d, want > 0", got1.Seq)
	}
	want1 := d1
	want1.Seq = got1.Seq
	want1.CreatedAt = us(base)
	checkDecision(t, got1, want1)

	// A human overrides later; bare fields and a zero time are fine.
	d2 := catalog.Decision{VideoID: "v1", Key: "review/42", Actor: "reviewer:ann", Outcome: "blocked", Reason: "off-topic"}
	got2, created, err := s.AppendDecision(ctx, d2)
	if err != nil || !created {
		t.Fatalf("AppendDecision(d2) = %v, %v", created, err)
	}
	if got2.Seq <= got1.Seq {
		t.Fatalf("Seq %d after %d, want increasing", got2.Seq, got1.Seq)
	}
	if got2.Sampler != nil || got2.Segments != nil || got2.Scores != nil || time.Since(got2.CreatedAt) > time.Minute {
		t.Fatalf("bare decision came back as %+v", got2)
	}
	// The same key on another video is another decision.
	other, created, err := s.AppendDecision(ctx, sampleDecision("v2", "run-1/decide"))
	if err != nil || !created || other.VideoID != "v2" {
		t.Fatalf("AppendDecision(v2, same key) = %+v, %v, %v", other, created, err)
	}

	ds, err := s.Decisions(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("Decisions(v1): %d, want 2", len(ds))
	}
	checkDecision(t, ds[0], got1)
	checkDecision(t, ds[1], got2)

	if _, _, err := s.AppendDecision(ctx, sampleDecision("missing", "k")); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("AppendDecision(missing video) = %v, want ErrNotFound", err)
	}
	if _, err := s.Decisions(ctx, "missing"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("Decisions(missing video) = %v, want ErrNotFound", err)
	}
	bad := []catalog.Decision{
		sampleDecision("v1", ""),
		sampleDecision("", "k"),
		func() catalog.Decision {
			d := sampleDecision("v1", "bad-json")
			d.Scores = json.RawMessage(`{"max":`)
			return d
		}(),
		func() catalog.Decision {
			d := sampleDecision("v1", "bad-json")
			d.Segments = json.RawMessage(`nope`)
			return d
		}(),
	}
	for _, d := range bad {
		if _, _, err := s.AppendDecision(ctx, d); !errors.Is(err, catalog.ErrInvalid) {
			t.Fatalf("AppendDecision(video %q key %q) = %v, want ErrInvalid", d.VideoID, d.Key, err)
		}
	}
	if ds, _ := s.Decisions(ctx, "v1"); len(ds) != 2 {
		t.Fatalf("invalid appends left %d decisions, want 2", len(ds))
	}
}

func testDecisionIdempotent(t *testing.T, s catalog.Store) {
	create(t, s, sampleVideo("v1"))
	first, created, err := s.AppendDecision(ctx, sampleDecision("v1", "wf/run/decide"))
	if err != nil || !created {
		t.Fatal(created, err)
	}
	// The retried activity saw slightly different scores: the first record stands.
	retry := sampleDecision("v1", "wf/run/decide")
	retry.Outcome = "needs_review"
	retry.Scores = json.RawMessage(`{"max": 0.51}`)
	again, created, err := s.AppendDecision(ctx, retry)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Fatal("second AppendDecision with the same key: created = true")
	}
	checkDecision(t, again, first)
	if ds, _ := s.Decisions(ctx, "v1"); len(ds) != 1 {
		t.Fatalf("%d decisions, want 1", len(ds))
	}
}

func testDecisionConcurrent(t *testing.T, s catalog.Store) {
	create(t, s, sampleVideo("v1"))
	const n = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		seqs    = map[int64]bool{}
		errs    []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := sampleDecision("v1", "wf/run/decide")
			d.Reason = fmt.Sprintf("attempt %d", i)
			<-start
			got, c, err := s.AppendDecision(ctx, d)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			seqs[got.Seq] = true
			if c {
				created++
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 || created != 1 || len(seqs) != 1 {
		t.Fatalf("%d concurrent appends: %d created, seqs %v, errors %v; want 1, one seq, none", n, created, seqs, errs)
	}
	ds, err := s.Decisions(ctx, "v1")
	if err != nil || len(ds) != 1 {
		t.Fatalf("Decisions = %d, %v; want exactly 1", len(ds), err)
	}
}

func testBlobKeyInUse(t *testing.T, s catalog.Store) {
	v := create(t, s, sampleVideo("v1"))
	for key, want := range map[string]bool{v.BlobKey: true, v.BlobKey + "x": false, "": false} {
		got, err := s.BlobKeyInUse(ctx, key)
		if err != nil || got != want {
			t.Fatalf("BlobKeyInUse(%q) = %v, %v; want %v", key, got, err, want)
		}
	}
	if err := s.DeleteVideo(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.BlobKeyInUse(ctx, v.BlobKey); got {
		t.Fatal("a deleted video's upload is still in use")
	}
}

func testDeleteVideo(t *testing.T, s catalog.Store) {
	create(t, s, sampleVideo("v1"))
	if err := s.StageStarted(ctx, "v1", "probe", base); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVideo(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetVideo(ctx, "v1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("GetVideo after delete = %v, want ErrNotFound", err)
	}
	if err := s.DeleteVideo(ctx, "v1"); err != nil {
		t.Fatalf("DeleteVideo of a missing video = %v, want nil", err)
	}
	// The id is free again, with no stages left over.
	if v := create(t, s, sampleVideo("v1")); len(v.Stages) != 0 {
		t.Fatalf("recreated video has stages %s", stagesString(v.Stages))
	}
	if _, _, err := s.AppendDecision(ctx, sampleDecision("v1", "k")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVideo(ctx, "v1"); !errors.Is(err, catalog.ErrHasDecisions) {
		t.Fatalf("DeleteVideo with decisions = %v, want ErrHasDecisions", err)
	}
	get(t, s, "v1")
	if ds, _ := s.Decisions(ctx, "v1"); len(ds) != 1 {
		t.Fatalf("%d decisions after refused delete, want 1", len(ds))
	}
	ids, _ := walk(t, s, catalog.ListQuery{})
	if !reflect.DeepEqual(ids, []string{"v1"}) {
		t.Fatalf("listed %v, want [v1]", ids)
	}
}

func testClose(t *testing.T, s catalog.Store) {
	create(t, s, sampleVideo("v1"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetVideo(ctx, "v1"); err == nil {
		t.Fatal("GetVideo after Close succeeded")
	}
	if _, _, err := s.CreateVideo(ctx, sampleVideo("v2")); err == nil {
		t.Fatal("CreateVideo after Close succeeded")
	}
	// Run closes again at cleanup: that must be harmless.
}

func testConcludeStage(t *testing.T, s catalog.Store) {
	create(t, s, sampleVideo("c1"))
	if err := s.StageStarted(ctx, "c1", "decide", base); err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, "c1", catalog.StateProcessing, "old reason"); err != nil {
		t.Fatal(err)
	}
	if err := s.ConcludeStage(ctx, "c1", "decide", catalog.StateBlocked); err != nil {
		t.Fatal(err)
	}
	v := get(t, s, "c1")
	if v.State != catalog.StateBlocked || v.Error != "" || len(v.Stages) != 1 || v.Stages[0].State != catalog.StageSucceeded || v.Stages[0].FinishedAt == nil {
		t.Fatalf("after ConcludeStage: state %s %q, stages %s", v.State, v.Error, stagesString(v.Stages))
	}
	// A stage that is not running is left as it was; the state still moves.
	if err := s.StageFinished(ctx, "c1", "decide", base.Add(time.Second), catalog.StageFailed, "boom"); err != nil {
		t.Fatal(err)
	}
	if err := s.ConcludeStage(ctx, "c1", "decide", catalog.StateApproved); err != nil {
		t.Fatal(err)
	}
	if v := get(t, s, "c1"); v.State != catalog.StateApproved || v.Stages[0].State != catalog.StageFailed {
		t.Fatalf("not running: state %s, stages %s", v.State, stagesString(v.Stages))
	}
	if err := s.ConcludeStage(ctx, "nope", "decide", catalog.StateApproved); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("missing video: %v, want ErrNotFound", err)
	}
	if err := s.ConcludeStage(ctx, "c1", "decide", catalog.State("bogus")); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("bad state: %v, want ErrInvalid", err)
	}
}
