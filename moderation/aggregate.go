package moderation

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/lessonflow/lessonflow/media"
)

// maxSegments bounds what a decision carries (it travels through workflow
// history and the decision log); the strongest segments are kept.
const maxSegments = 50

// RescanWindows picks the time windows to re-sample densely: around every
// coarse frame whose raw score reaches a signal's rescan threshold. Overlapping
// windows merge; when there are more than the sampler allows, the ones with
// the highest scores win. The result is sorted by start time.
func (p *Policy) RescanWindows(frames []FrameScore, durationMS int64) []media.Window {
	type scored struct {
		w     media.Window
		score float64
	}
	half := p.Sampling.DenseWindowMS
	var ws []scored
	for _, f := range frames {
		if f.Dense {
			continue
		}
		best := 0.0
		for i := range p.Signals {
			s := &p.Signals[i]
			if v := s.score(f); s.Rescan > 0 && v >= s.Rescan && v > best {
				best = v
			}
		}
		if best == 0 {
			continue
		}
		w := media.Window{StartMS: max(0, f.PTSMS-half), EndMS: f.PTSMS + half}
		if durationMS > 0 {
			w.EndMS = min(w.EndMS, durationMS)
		}
		ws = append(ws, scored{w, best})
	}
	slices.SortFunc(ws, func(a, b scored) int { return cmp.Compare(a.w.StartMS, b.w.StartMS) })
	var merged []scored
	for _, w := range ws {
		if n := len(merged); n > 0 && w.w.StartMS <= merged[n-1].w.EndMS {
			merged[n-1].w.EndMS = max(merged[n-1].w.EndMS, w.w.EndMS)
			merged[n-1].score = max(merged[n-1].score, w.score)
			continue
		}
		merged = append(merged, w)
	}
	if limit := p.Sampling.MaxDenseWindows; limit > 0 && len(merged) > limit {
		slices.SortStableFunc(merged, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
		merged = merged[:limit]
		slices.SortFunc(merged, func(a, b scored) int { return cmp.Compare(a.w.StartMS, b.w.StartMS) })
	}
	out := make([]media.Window, len(merged))
	for i, m := range merged {
		out[i] = m.w
	}
	return out
}

// Decide applies the policy to all classified frames of a video (coarse and
// dense together). A frame's smoothed score is the mean raw score of the
// frames within ±WindowMS/2 of it, so one odd frame among dense neighbours
// cannot carry a segment, while a scene that lasts does. A flagged frame with
// no dense neighbours (its window was not re-sampled) goes to review: too
// little evidence to approve or block.
func (p *Policy) Decide(frames []FrameScore) Decision {
	frames = sortedUnique(frames)
	d := Decision{PolicyVersion: p.Version, Signals: map[string]SignalSummary{}, Segments: []Segment{}}
	raw := make([]float64, len(frames))
	for i := range p.Signals {
		s := &p.Signals[i]
		for j, f := range frames {
			raw[j] = s.score(f)
		}
		smooth := smoothed(frames, raw, p.Aggregation.WindowMS/2)
		sum := SignalSummary{Frames: len(frames)}
		for j := range frames {
			if raw[j] > sum.MaxRaw {
				sum.MaxRaw, sum.MaxRawAtMS = raw[j], frames[j].PTSMS
			}
			sum.MaxSmoothed = max(sum.MaxSmoothed, smooth[j])
		}
		d.Signals[s.Name] = sum
		segs := p.segments(s, frames, raw, smooth)
		d.Segments = append(d.Segments, append(segs, p.flashes(s, frames, raw, segs)...)...)
	}
	if len(d.Segments) > maxSegments {
		slices.SortStableFunc(d.Segments, func(a, b Segment) int { return cmp.Compare(b.PeakScore, a.PeakScore) })
		d.Segments = d.Segments[:maxSegments]
	}
	slices.SortStableFunc(d.Segments, func(a, b Segment) int { return cmp.Compare(a.StartMS, b.StartMS) })
	d.Outcome, d.Reason = p.verdict(d)
	return d
}

func (p *Policy) segments(s *Signal, frames []FrameScore, raw, smooth []float64) []Segment {
	var out []Segment
	a := p.Aggregation
	for i := 0; i < len(frames); {
		if smooth[i] < s.Review {
			i++
			continue
		}
		// Grow the run over flagged frames, bridging gaps up to MergeGapMS.
		j := i
		for k := i + 1; k < len(frames) && frames[k].PTSMS-frames[j].PTSMS <= a.MergeGapMS; k++ {
			if smooth[k] >= s.Review {
				j = k
			}
		}
		seg := Segment{Signal: s.Name, StartMS: frames[i].PTSMS, EndMS: frames[j].PTSMS, Frames: j - i + 1}
		var sum float64
		blockFrames, reviewFrames, dense := 0, 0, false
		for k := i; k <= j; k++ {
			sum += raw[k]
			seg.MaxScore = max(seg.MaxScore, raw[k])
			seg.PeakScore = max(seg.PeakScore, smooth[k])
			if s.Block > 0 && smooth[k] >= s.Block {
				blockFrames++
			}
			if smooth[k] >= s.Review {
				reviewFrames++
			}
			dense = dense || frames[k].Dense
		}
		seg.MeanScore = sum / float64(seg.Frames)
		switch {
		case blockFrames >= a.MinBlockFrames:
			seg.Action = ActionBlock
		case reviewFrames >= a.MinReviewFrames || !dense:
			seg.Action = ActionReview
		}
		if seg.Action != "" {
			out = append(out, seg)
		}
		i = j + 1
	}
	return out
}

// flashGapMS: frames further apart than this are not consecutive for a
// flash (dense frames come every 250 ms at 4 fps; coarse ones every 2 s).
const flashGapMS = 600

// flashes finds runs of close frames (so in practice dense ones) all scoring at least the
// signal's flash threshold that no other segment already covers.
func (p *Policy) flashes(s *Signal, frames []FrameScore, raw []float64, covered []Segment) []Segment {
	n := p.Aggregation.FlashFrames
	if s.Flash <= 0 || n <= 0 {
		return nil
	}
	var out []Segment
	emit := func(i, j int) {
		if j-i+1 < n {
			return
		}
		for _, c := range covered {
			if c.StartMS <= frames[j].PTSMS && frames[i].PTSMS <= c.EndMS {
				return
			}
		}
		seg := Segment{Signal: s.Name, Action: ActionReview, StartMS: frames[i].PTSMS, EndMS: frames[j].PTSMS, Frames: j - i + 1}
		var sum float64
		for k := i; k <= j; k++ {
			sum += raw[k]
			seg.MaxScore = max(seg.MaxScore, raw[k])
		}
		seg.MeanScore = sum / float64(seg.Frames)
		seg.PeakScore = seg.MeanScore
		out = append(out, seg)
	}
	start := -1
	for k := range frames {
		hit := raw[k] >= s.Flash
		if hit && start >= 0 && frames[k].PTSMS-frames[k-1].PTSMS > flashGapMS {
			emit(start, k-1)
			start = -1
		}
		switch {
		case hit && start < 0:
			start = k
		case !hit && start >= 0:
			emit(start, k-1)
			start = -1
		}
	}
	if start >= 0 {
		emit(start, len(frames)-1)
	}
	return out
}

func (p *Policy) verdict(d Decision) (Outcome, string) {
	var block, review []string
	for _, s := range d.Segments {
		desc := fmt.Sprintf("%s %.1fs-%.1fs (%d frames, smoothed peak %.2f, max %.2f)",
			s.Signal, float64(s.StartMS)/1000, float64(s.EndMS)/1000, s.Frames, s.PeakScore, s.MaxScore)
		if s.Action == ActionBlock {
			block = append(block, desc)
		} else {
			review = append(review, desc)
		}
	}
	switch {
	case len(block) > 0:
		return Blocked, "blocked by policy " + p.Version + ": " + strings.Join(block, "; ")
	case len(review) > 0:
		return NeedsReview, "needs review under policy " + p.Version + ": " + strings.Join(review, "; ")
	}
	var parts []string
	for _, s := range p.Signals {
		parts = append(parts, fmt.Sprintf("%s max %.2f (smoothed %.2f, review at %.2f)",
			s.Name, d.Signals[s.Name].MaxRaw, d.Signals[s.Name].MaxSmoothed, s.Review))
	}
	return Approved, "no segment reached a review threshold: " + strings.Join(parts, "; ")
}

// sortedUnique orders frames by time and drops a dense frame that repeats a
// coarse one (same timestamp), so no frame counts twice.
func sortedUnique(in []FrameScore) []FrameScore {
	frames := slices.Clone(in)
	slices.SortStableFunc(frames, func(a, b FrameScore) int {
		if c := cmp.Compare(a.PTSMS, b.PTSMS); c != 0 {
			return c
		}
		return cmp.Compare(btoi(a.Dense), btoi(b.Dense))
	})
	return slices.CompactFunc(frames, func(a, b FrameScore) bool { return a.PTSMS == b.PTSMS })
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// smoothed returns, for each frame, the mean of raw over frames within ±half ms.
func smoothed(frames []FrameScore, raw []float64, half int64) []float64 {
	out := make([]float64, len(frames))
	lo, hi := 0, 0
	var sum float64
	for i, f := range frames {
		for hi < len(frames) && frames[hi].PTSMS <= f.PTSMS+half {
			sum += raw[hi]
			hi++
		}
		for frames[lo].PTSMS < f.PTSMS-half {
			sum -= raw[lo]
			lo++
		}
		out[i] = sum / float64(hi-lo)
	}
	return out
}
