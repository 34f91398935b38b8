package moderation

import (
	"strings"
	"testing"
)

// labels: Drawing, Hentai, Neutral, Porn, Sexy
func frame(ms int64, dense bool, porn float32) FrameScore {
	return FrameScore{PTSMS: ms, Dense: dense, Scores: []float32{0.02, 0, 0.98 - porn, porn, 0}}
}

// video builds coarse frames every 2 s with a dense 4 fps pass over
// [denseFrom, denseTo], scoring each frame with f(ms).
func video(durMS, denseFrom, denseTo int64, f func(ms int64) float32) []FrameScore {
	var out []FrameScore
	for ms := int64(0); ms <= durMS; ms += 2000 {
		out = append(out, frame(ms, false, f(ms)))
	}
	for ms := denseFrom; ms <= denseTo && denseTo > 0; ms += 250 {
		out = append(out, frame(ms, true, f(ms)))
	}
	return out
}

func mustDefault(t *testing.T) *Policy {
	t.Helper()
	p, err := LoadPolicy("default")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOneOddFrameDoesNotBlock(t *testing.T) {
	p := mustDefault(t)
	frames := video(60000, 7000, 13000, func(ms int64) float32 {
		if ms == 10000 {
			return 0.95
		}
		return 0.03
	})
	d := p.Decide(frames)
	if d.Outcome != Approved {
		t.Fatalf("one odd frame: got %s (%s)", d.Outcome, d.Reason)
	}
	if got := d.Signals["explicit"].MaxRaw; got < 0.94 {
		t.Fatalf("summary lost the blip: max raw %.2f", got)
	}
}

func TestTwoConsecutiveBlipsApproved(t *testing.T) {
	// The indoor clip's pattern: two neighbouring frames around 0.6.
	p := mustDefault(t)
	frames := video(30000, 9000, 15500, func(ms int64) float32 {
		switch ms {
		case 12000:
			return 0.63
		case 12250:
			return 0.60
		}
		return 0.05
	})
	if d := p.Decide(frames); d.Outcome != Approved {
		t.Fatalf("got %s (%s)", d.Outcome, d.Reason)
	}
}

func TestSustainedSceneBlocks(t *testing.T) {
	p := mustDefault(t)
	frames := video(60000, 17000, 27000, func(ms int64) float32 {
		if ms >= 20000 && ms <= 24000 {
			return 0.93
		}
		return 0.03
	})
	d := p.Decide(frames)
	if d.Outcome != Blocked {
		t.Fatalf("got %s (%s)", d.Outcome, d.Reason)
	}
	var seg *Segment
	for i := range d.Segments {
		if d.Segments[i].Action == ActionBlock {
			seg = &d.Segments[i]
		}
	}
	if seg == nil || seg.Signal != "explicit" {
		t.Fatalf("no explicit block segment in %+v", d.Segments)
	}
	if seg.StartMS < 19000 || seg.StartMS > 21000 || seg.EndMS < 23000 || seg.EndMS > 25000 {
		t.Fatalf("segment %d-%d ms, want about 20000-24000", seg.StartMS, seg.EndMS)
	}
	if seg.MaxScore < 0.92 || seg.Frames < 10 {
		t.Fatalf("segment stats off: %+v", seg)
	}
	if !strings.Contains(d.Reason, p.Version) {
		t.Fatalf("reason %q does not name the policy version", d.Reason)
	}
}

func TestMediumSceneGoesToReview(t *testing.T) {
	p := mustDefault(t)
	frames := video(60000, 17000, 27000, func(ms int64) float32 {
		if ms >= 20000 && ms <= 24000 {
			return 0.75
		}
		return 0.03
	})
	if d := p.Decide(frames); d.Outcome != NeedsReview {
		t.Fatalf("got %s (%s)", d.Outcome, d.Reason)
	}
}

func TestFlaggedFrameWithoutDenseEvidenceGoesToReview(t *testing.T) {
	p := mustDefault(t)
	frames := video(60000, 0, 0, func(ms int64) float32 {
		if ms == 30000 {
			return 0.97
		}
		return 0.02
	})
	if d := p.Decide(frames); d.Outcome != NeedsReview {
		t.Fatalf("an unverified strong frame must not be approved: got %s (%s)", d.Outcome, d.Reason)
	}
}

func TestDenseFrameAtCoarseTimestampCountsOnce(t *testing.T) {
	frames := []FrameScore{frame(1000, false, 0.5), frame(1000, true, 0.5), frame(1250, true, 0.1)}
	if got := sortedUnique(frames); len(got) != 2 || got[0].Dense {
		t.Fatalf("got %+v", got)
	}
}

func TestRescanWindowsMergeAndCap(t *testing.T) {
	p := mustDefault(t)
	p.Sampling.MaxDenseWindows = 2
	scores := map[int64]float32{10000: 0.5, 12000: 0.45, 40000: 0.9, 80000: 0.7, 100000: 0.41}
	frames := video(120000, 0, 0, func(ms int64) float32 { return scores[ms] })
	ws := p.RescanWindows(frames, 110000)
	if len(ws) != 2 {
		t.Fatalf("want 2 windows (capped), got %+v", ws)
	}
	if ws[0].StartMS != 37000 || ws[0].EndMS != 43000 || ws[1].StartMS != 77000 || ws[1].EndMS != 83000 {
		t.Fatalf("want the two strongest windows in time order, got %+v", ws)
	}
	p.Sampling.MaxDenseWindows = 10
	ws = p.RescanWindows(frames, 101000)
	if len(ws) != 4 || ws[0].StartMS != 7000 || ws[0].EndMS != 15000 {
		t.Fatalf("neighbouring windows must merge: %+v", ws)
	}
	if last := ws[len(ws)-1]; last.EndMS != 101000 {
		t.Fatalf("windows must end at the video's end: %+v", last)
	}
}

func TestBuiltinPoliciesLoad(t *testing.T) {
	for _, name := range BuiltinPolicies() {
		p, err := LoadPolicy(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := p.CheckLabels([]string{"Drawing", "Hentai", "Neutral", "Porn", "Sexy"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadPolicy("nope"); err == nil || !strings.Contains(err.Error(), "default") {
		t.Fatalf("unknown policy name should list the built-ins, got %v", err)
	}
}

func TestPolicyValidation(t *testing.T) {
	base := `version: v1
labels: [A, B]
signals:
  - {name: s, labels: [A], rescan: 0.4, review: 0.5, block: 0.8}
aggregation: {window_ms: 2000, merge_gap_ms: 1000, min_block_frames: 2, min_review_frames: 1}
`
	if _, err := ParsePolicy([]byte(base)); err != nil {
		t.Fatalf("valid policy rejected: %v", err)
	}
	bad := map[string]string{
		"unknown field":  base + "typo: 1\n",
		"unknown label":  strings.Replace(base, "labels: [A]", "labels: [C]", 1),
		"block < review": strings.Replace(base, "block: 0.8", "block: 0.3", 1),
		"no version":     strings.Replace(base, "version: v1", "version: \"\"", 1),
		"out of range":   strings.Replace(base, "review: 0.5", "review: 1.5", 1),
	}
	for name, doc := range bad {
		if _, err := ParsePolicy([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	p, _ := ParsePolicy([]byte(base))
	if err := p.CheckLabels([]string{"B", "A"}); err == nil {
		t.Error("label order mismatch accepted")
	}
}

func TestDrawingPolicyBlocksSustainedDrawing(t *testing.T) {
	p, err := LoadPolicy("test-block-drawing")
	if err != nil {
		t.Fatal(err)
	}
	var frames []FrameScore
	for ms := int64(0); ms <= 10000; ms += 250 {
		frames = append(frames, FrameScore{PTSMS: ms, Dense: ms%2000 != 0, Scores: []float32{0.9, 0.02, 0.08, 0, 0}})
	}
	if d := p.Decide(frames); d.Outcome != Blocked {
		t.Fatalf("got %s (%s)", d.Outcome, d.Reason)
	}
}

// sintelExplicit is the real Porn+Hentai score of Sintel_1080_10s_2MB.mp4
// (safe animation) at 4 fps: 1.75 s of 0.54-0.95 around 6 s. It must not
// leave approval.
var sintelExplicit = [][2]float64{{0, 0.03}, {250, 0.03}, {500, 0.06}, {750, 0.10}, {1000, 0.28}, {1250, 0.11}, {1500, 0.24}, {1750, 0.03}, {2000, 0.30}, {2250, 0.03}, {2500, 0.01}, {2750, 0.06}, {3000, 0.54}, {3250, 0.92}, {3500, 0.37}, {3750, 0.44}, {4000, 0.76}, {4250, 0.31}, {4500, 0.18}, {4750, 0.29}, {5000, 0.24}, {5250, 0.73}, {5500, 0.79}, {5750, 0.61}, {6000, 0.95}, {6250, 0.63}, {6500, 0.54}, {6750, 0.68}, {7000, 0.82}, {7250, 0.06}, {7500, 0.01}, {7750, 0.03}, {8000, 0.10}, {8250, 0.56}, {8500, 0.54}, {8750, 0.00}, {9000, 0.82}, {9250, 0.03}, {9500, 0.48}, {9750, 0.05}}

func TestSintelRunApproved(t *testing.T) {
	p := mustDefault(t)
	var frames []FrameScore
	for _, f := range sintelExplicit {
		frames = append(frames, frame(int64(f[0]), int64(f[0])%2000 != 0, float32(f[1])))
	}
	d := p.Decide(frames)
	if d.Outcome != Approved {
		t.Fatalf("Sintel's real scores: got %s (%s)", d.Outcome, d.Reason)
	}
	if d.Signals["explicit"].MaxRaw < 0.9 {
		t.Fatalf("fixture lost its peak: %+v", d.Signals["explicit"])
	}
}

// A one-second flash of confident frames must not be averaged away.
func TestShortConfidentFlashGoesToReview(t *testing.T) {
	p := mustDefault(t)
	frames := video(60000, 27000, 33000, func(ms int64) float32 {
		if ms >= 30000 && ms <= 30750 {
			return 0.96
		}
		return 0.03
	})
	d := p.Decide(frames)
	if d.Outcome != NeedsReview {
		t.Fatalf("got %s (%s)", d.Outcome, d.Reason)
	}
	if len(d.Segments) != 1 || d.Segments[0].StartMS != 30000 || d.Segments[0].EndMS != 30750 || d.Segments[0].Frames != 4 {
		t.Fatalf("flash segment: %+v", d.Segments)
	}
	// Two confident frames are a blip, not a flash.
	frames = video(60000, 27000, 33000, func(ms int64) float32 {
		if ms == 30000 || ms == 30250 {
			return 0.96
		}
		return 0.03
	})
	if d := p.Decide(frames); d.Outcome != Approved {
		t.Fatalf("two-frame blip: got %s (%s)", d.Outcome, d.Reason)
	}
}
