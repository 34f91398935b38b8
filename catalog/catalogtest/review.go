package catalogtest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/review"
)

// reviewTests are the ReviewStore contract, run by Run: every catalog.Store
// backend must also be a ReviewStore (the review queue lists from it).
var reviewTests = []storeTest[catalog.Store]{
	{"ReviewSaveGet", as(testReviewSaveGet)},
	{"ReviewVersions", as(testReviewVersions)},
	{"ReviewListOrder", as(testReviewListOrder)},
	{"ReviewUploaderHistory", as(testReviewUploaderHistory)},
	{"DecisionsPage", as(testDecisionsPage)},
}

func sampleItem(id, videoID string, base float64, created time.Time) review.Item {
	return review.Item{
		ID: id, VideoID: videoID, Kind: review.KindModel, State: review.StatePending, Version: 1,
		Reason: "drawing segment", BasePriority: base, CreatedAt: created, UpdatedAt: created,
		Evidence: review.Evidence{PolicyVersion: "p/1", Segments: []review.Segment{
			{Signal: "drawing", Action: "review", StartMS: 1000, EndMS: 4000, MaxScore: 0.9, ThumbKey: "evidence/x/0.jpg"}}},
		WorkflowID: "review-" + id, RunID: "run-" + id, DeadlineAt: created.Add(time.Hour),
	}
}

func testReviewSaveGet(t *testing.T, s catalog.Store, rs catalog.ReviewStore) {
	create(t, s, sampleVideo("v1"))
	if _, err := rs.GetReviewItem(ctx, "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("missing item: %v", err)
	}
	it := sampleItem("ri1", "v1", 30, base)
	if err := rs.SaveReviewItem(ctx, it); err != nil {
		t.Fatal(err)
	}
	got, err := rs.GetReviewItem(ctx, "ri1")
	if err != nil {
		t.Fatal(err)
	}
	if got.WorkflowID != "review-ri1" || got.RunID != "run-ri1" || got.BasePriority != 30 || got.Version != 1 ||
		got.Evidence.Segments[0].ThumbKey != "evidence/x/0.jpg" || !got.CreatedAt.Equal(us(base)) || got.State != review.StatePending {
		t.Fatalf("got %+v", got)
	}
	// Priority includes the waiting time, as of now.
	if want := review.Priority(30, got.CreatedAt, time.Now()); got.Priority < want-0.01 || got.Priority > want+0.01 {
		t.Fatalf("priority %v, want about %v", got.Priority, want)
	}
	for _, bad := range []review.Item{
		{VideoID: "v1", Kind: review.KindModel, State: review.StatePending, Version: 1},
		{ID: "x", VideoID: "v1", Kind: "other", State: review.StatePending, Version: 1},
		{ID: "x", VideoID: "v1", Kind: review.KindModel, State: "gone", Version: 1},
		{ID: "x", VideoID: "v1", Kind: review.KindModel, State: review.StatePending},
	} {
		if err := rs.SaveReviewItem(ctx, bad); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
	if err := rs.SaveReviewItem(ctx, sampleItem("ri2", "nope", 1, base)); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("item of a missing video: %v", err)
	}
}

func testReviewVersions(t *testing.T, s catalog.Store, rs catalog.ReviewStore) {
	create(t, s, sampleVideo("v1"))
	it := sampleItem("ri1", "v1", 10, base)
	v2 := it
	v2.Version, v2.State, v2.ClaimedBy = 2, review.StateClaimed, "alice"
	exp := base.Add(time.Minute)
	v2.LeaseExpiresAt = &exp
	v3 := v2
	v3.Version, v3.State, v3.ClaimedBy, v3.LeaseExpiresAt = 3, review.StateDecided, "", nil
	v3.Decision = &review.Decision{Decision: review.Block, ReasonCode: "x", Reason: "y", Reviewer: "alice", Version: 2, DecidedAt: base.Add(2 * time.Hour)}
	for _, w := range []review.Item{v2, v3, it, v2} { // the older writes arrive late
		if err := rs.SaveReviewItem(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	got, err := rs.GetReviewItem(ctx, "ri1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 3 || got.State != review.StateDecided || got.Decision == nil || got.Decision.Reviewer != "alice" || got.LeaseExpiresAt != nil {
		t.Fatalf("got %+v", got)
	}
	// A decided item's priority stops growing at its decision.
	if want := review.Priority(10, us(base), base.Add(2*time.Hour)); got.Priority != want {
		t.Fatalf("decided priority %v, want %v", got.Priority, want)
	}
	items, _, err := rs.ListReviewItems(ctx, catalog.ReviewQuery{State: review.StateClaimed})
	if err != nil || len(items) != 0 {
		t.Fatalf("claimed items after the decision: %v %v", items, err)
	}
}

func testReviewListOrder(t *testing.T, s catalog.Store, rs catalog.ReviewStore) {
	create(t, s, sampleVideo("v1"))
	create(t, s, sampleVideo("v2"))
	// Seven items: base priorities and ages chosen so that waiting time
	// matters (2 per hour): ri0 is low but 100 h old.
	var want []string
	specs := []struct {
		id    string
		base  float64
		hours int
		state review.State
	}{
		{"ri0", 1, -100, review.StatePending},  // 201 + ...
		{"ri1", 150, 0, review.StateEscalated}, // 150
		{"ri2", 40, -10, review.StatePending},  // 60
		{"ri3", 55, 0, review.StatePending},    // 55
		{"ri4", 55, 0, review.StateClaimed},    // 55, tie: id order
		{"ri5", 20, -5, review.StatePending},   // 30
		{"ri6", 5, 0, review.StatePending},     // 5
	}
	now := base.Add(200 * time.Hour)
	for i, sp := range specs {
		it := sampleItem(sp.id, []string{"v1", "v2"}[i%2], sp.base, now.Add(time.Duration(sp.hours)*time.Hour))
		it.State = sp.state
		if err := rs.SaveReviewItem(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	want = []string{"ri0", "ri1", "ri2", "ri4", "ri3", "ri5", "ri6"}
	for _, limit := range []int{1, 2, 3, 7, 50} {
		var got []string
		cursor := ""
		for page := 0; ; page++ {
			items, next, err := rs.ListReviewItems(ctx, catalog.ReviewQuery{Limit: limit, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			if len(items) > limit || page > 10 {
				t.Fatalf("limit %d: page of %d", limit, len(items))
			}
			for _, it := range items {
				got = append(got, it.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("limit %d: order %v, want %v", limit, got, want)
		}
	}
	items, _, err := rs.ListReviewItems(ctx, catalog.ReviewQuery{State: review.StatePending, VideoID: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	if fmt.Sprint(ids) != "[ri0 ri2 ri6]" {
		t.Fatalf("pending of v1: %v", ids)
	}
	if _, _, err := rs.ListReviewItems(ctx, catalog.ReviewQuery{State: "bogus"}); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("bad state: %v", err)
	}
	for _, c := range []string{"%%", "abc", "eHx5"} {
		if _, _, err := rs.ListReviewItems(ctx, catalog.ReviewQuery{Cursor: c}); !errors.Is(err, catalog.ErrBadCursor) {
			t.Errorf("cursor %q: %v", c, err)
		}
	}
}

func testReviewUploaderHistory(t *testing.T, s catalog.Store, rs catalog.ReviewStore) {
	for i, st := range []catalog.State{catalog.StateBlocked, catalog.StateBlocked, catalog.StatePublished, catalog.StateProcessing} {
		v := sampleVideo(fmt.Sprintf("h%d", i))
		v.TeacherID = "t-9"
		create(t, s, v)
		if err := s.SetState(ctx, v.ID, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	blocked, total, err := rs.UploaderHistory(ctx, "t-9")
	if err != nil || blocked != 2 || total != 4 {
		t.Fatalf("history: %d/%d %v", blocked, total, err)
	}
	if b, n, err := rs.UploaderHistory(ctx, "nobody"); b != 0 || n != 0 || err != nil {
		t.Fatalf("unknown teacher: %d/%d %v", b, n, err)
	}
	if n, err := rs.Audience(ctx, "h0"); n != 0 || err != nil {
		t.Fatalf("audience of an unseen lesson: %d %v", n, err)
	}
}

// testDecisionsPage: the decision log pages oldest first, one video only,
// stable while decisions are appended; foreign cursors and unknown videos
// are refused.
func testDecisionsPage(t *testing.T, s catalog.Store, dp catalog.DecisionPager) {
	create(t, s, sampleVideo("dp1"))
	create(t, s, sampleVideo("dp2"))
	for i := range 5 {
		for _, id := range []string{"dp1", "dp2"} {
			if _, _, err := s.AppendDecision(ctx, catalog.Decision{VideoID: id, Key: fmt.Sprintf("k%d", i), Actor: "model:m",
				Outcome: "approved", Reason: fmt.Sprintf("r%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		ds, next, err := dp.DecisionsPage(ctx, catalog.DecisionQuery{VideoID: "dp1", Limit: 2, Cursor: cursor})
		if err != nil || len(ds) > 2 || pages > 3 {
			t.Fatalf("page %d: %v %v", pages, ds, err)
		}
		for _, d := range ds {
			if d.VideoID != "dp1" {
				t.Fatalf("another video's decision %+v", d)
			}
			got = append(got, d.Reason)
		}
		if pages == 0 {
			// Appended while paging: shows up at the end, nothing repeats.
			if _, _, err := s.AppendDecision(ctx, catalog.Decision{VideoID: "dp1", Key: "k5", Actor: "reviewer:r", Outcome: "blocked", Reason: "r5"}); err != nil {
				t.Fatal(err)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(got) != "[r0 r1 r2 r3 r4 r5]" {
		t.Fatalf("paged log %v", got)
	}
	if ds, next, err := dp.DecisionsPage(ctx, catalog.DecisionQuery{VideoID: "dp2"}); err != nil || len(ds) != 5 || next != "" {
		t.Fatalf("default page: %d %q %v", len(ds), next, err)
	}
	if _, _, err := dp.DecisionsPage(ctx, catalog.DecisionQuery{VideoID: "dp1", Cursor: "??"}); !errors.Is(err, catalog.ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := dp.DecisionsPage(ctx, catalog.DecisionQuery{VideoID: "nope"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("unknown video: %v", err)
	}
}
