package recheck

import (
	"context"
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
)

func TestCompare(t *testing.T) {
	model := func(o string) *catalog.Decision { return &catalog.Decision{Actor: "model:m", Outcome: o} }
	cases := []struct {
		name    string
		state   catalog.State
		last    *catalog.Decision
		shadow  moderation.Outcome
		changed bool
		review  bool
	}{
		{"same verdict", catalog.StateApproved, model("approved"), moderation.Approved, false, false},
		{"published now blocked", catalog.StatePublished, model("approved"), moderation.Blocked, true, true},
		{"approved now needs review", catalog.StateApproved, model("approved"), moderation.NeedsReview, true, true},
		{"blocked now approved", catalog.StateBlocked, model("blocked"), moderation.Approved, true, true},
		// A person approved what the model sent to review; the new policy
		// asks for review again: same model verdict, nothing to do.
		{"human-approved review again", catalog.StatePublished, model("needs_review"), moderation.NeedsReview, false, false},
		// The model sent it to review, a person approved, the new policy
		// approves: a change in the model's verdict, but it agrees with the video.
		{"human-approved now approved", catalog.StateApproved, model("needs_review"), moderation.Approved, true, false},
		{"no model decision on record", catalog.StateBlocked, nil, moderation.Blocked, false, false},
		{"no model decision, differs", catalog.StateApproved, nil, moderation.Blocked, true, true},
		{"not a decided video", catalog.StateProcessing, nil, moderation.Blocked, true, false},
	}
	for _, c := range cases {
		v := Compare(c.state, c.last, c.shadow)
		if v.Changed != c.changed || v.NeedsReview != c.review {
			t.Errorf("%s: %+v, want changed %v review %v", c.name, v, c.changed, c.review)
		}
	}
}

func TestLastModelDecision(t *testing.T) {
	ds := []catalog.Decision{
		{Seq: 1, Actor: "model:nsfw", Outcome: "needs_review"},
		{Seq: 2, Actor: "reviewer:key:ab", Outcome: "approved"},
	}
	if d := LastModelDecision(ds); d == nil || d.Seq != 1 {
		t.Fatalf("LastModelDecision = %+v, want seq 1 (people are skipped)", d)
	}
	if LastModelDecision(ds[1:]) != nil {
		t.Fatal("no model decision should give nil")
	}
}

func TestCovered(t *testing.T) {
	grid := func(from, to, step int64) []int64 {
		var out []int64
		for t := from; t <= to; t += step {
			out = append(out, t)
		}
		return out
	}
	w := []media.Window{{StartMS: 1000, EndMS: 7000}}
	cases := []struct {
		name string
		w    []media.Window
		pts  []int64
		want bool
	}{
		{"exact grid", w, grid(1000, 7000, 250), true},
		{"shifted grid", w, grid(1100, 6900, 250), true},
		{"wider stored window", w, grid(0, 9000, 250), true},
		{"starts late", w, grid(2000, 7000, 250), false},
		{"ends early", w, grid(1000, 5000, 250), false},
		{"hole", w, append(grid(1000, 3000, 250), grid(4000, 7000, 250)...), false},
		{"nothing stored", w, nil, false},
		{"no windows", nil, nil, true},
		{"second window uncovered", append(w, media.Window{StartMS: 20000, EndMS: 23000}), grid(1000, 7000, 250), false},
		{"unsorted", w, []int64{7000, 1000, 1250, 1500, 1750, 2000, 2250, 2500, 2750, 3000, 3250, 3500, 3750, 4000, 4250, 4500, 4750, 5000, 5250, 5500, 5750, 6000, 6250, 6500, 6750}, true},
	}
	for _, c := range cases {
		if got := Covered(c.w, c.pts, 4); got != c.want {
			t.Errorf("%s: Covered = %v, want %v", c.name, got, c.want)
		}
	}
	if Covered(w, grid(1000, 7000, 250), 0) {
		t.Error("fps 0 covers nothing")
	}
}

func TestCheckStates(t *testing.T) {
	if s, err := CheckStates(nil); err != nil || len(s) != 3 {
		t.Fatalf("default states = %v, %v", s, err)
	}
	for _, bad := range [][]catalog.State{{"processing"}, {"needs_review"}, {"approved", "approved"}, {"nonsense"}} {
		if _, err := CheckStates(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckStates(%v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestPolicyStoredByContent(t *testing.T) {
	ctx := context.Background()
	blobs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := moderation.LoadPolicy("test-block-drawing")
	if err != nil {
		t.Fatal(err)
	}
	// A built-in policy written back as YAML parses to the same policy.
	text, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	ref, parsed, err := StorePolicy(ctx, blobs, text)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Version != p.Version || parsed.Version != p.Version || ref.Key != PolicyKey(ref.SHA256) {
		t.Fatalf("ref %+v", ref)
	}
	again, _, err := StorePolicy(ctx, blobs, text)
	if err != nil || again != ref {
		t.Fatalf("same text stored again: %+v, %v; want %+v", again, err, ref)
	}
	back, err := LoadPolicy(ctx, blobs, ref)
	if err != nil || back.Version != p.Version || len(back.Signals) != len(p.Signals) || back.Sampling != p.Sampling {
		t.Fatalf("LoadPolicy = %+v, %v", back, err)
	}
	// A changed object is refused.
	if _, err := blob.PutBytes(ctx, blobs, ref.Key, append(text, '\n')); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicy(ctx, blobs, ref); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("tampered policy: %v, want a hash mismatch", err)
	}
	for name, bad := range map[string]string{
		"empty":         "",
		"unknown field": strings.Replace(string(text), "version:", "versoin:", 1),
		"too large":     strings.Repeat("#", MaxPolicyBytes+1),
	} {
		if _, _, err := StorePolicy(ctx, blobs, []byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: StorePolicy = %v, want ErrInvalid", name, err)
		}
	}
}

func TestBatchIDs(t *testing.T) {
	a, b := NewBatchID(), NewBatchID()
	if a == b || !ValidBatchID(a) || !ValidBatchID(b) {
		t.Fatalf("ids %q %q", a, b)
	}
	for _, bad := range []string{"", "rc", "rc0123", "xx0123456789abcdef0123", "rc0123456789ABCDEF0123", "rc0123456789abcdef01234"} {
		if ValidBatchID(bad) {
			t.Errorf("ValidBatchID(%q) = true", bad)
		}
	}
	if !strings.HasPrefix(WorkflowID(a), "recheck-rc") || !strings.HasPrefix(ShadowPrefix(a, "v1"), "rechecks/"+a+"/v1/") {
		t.Fatal("names")
	}
}
