package recommend

import (
	"math"
	"sort"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
)

// Signal is what a user's events say about one lesson: a positive or a
// negative weight after time decay, and the strongest kind of interest for
// the reason shown ("which you completed").
type Signal struct {
	LessonID string
	Weight   float64 // > 0 liked/completed/watched, < 0 disliked/skipped
	Kind     catalog.EventType
}

// Event weights before decay. A view counts by how much of the lesson was
// watched; below minViewFraction it says nothing (the user may have left at
// once, which is what a skip says explicitly).
const (
	weightComplete  = 1.0
	weightLike      = 1.0
	weightView      = 0.5 // times the watched fraction
	weightDislike   = -1.0
	weightSkip      = -0.5
	minViewFraction = 0.1
	// assumedDurationS stands in for a lesson's length before it is known.
	assumedDurationS = 300.0
)

// Signals folds a user's events into one signal per lesson. Each event's
// weight is multiplied by 0.5^(age/halfLife), so last month's likes count
// half as much as today's. Lessons whose events cancel out are dropped.
// durations gives lesson lengths in ms (0 or absent: unknown). The result is
// sorted by |Weight|, strongest first.
func Signals(events []catalog.Event, durations map[string]int64, now time.Time, halfLife time.Duration) []Signal {
	type acc struct {
		w       float64
		kind    catalog.EventType
		kindW   float64
		present bool
	}
	by := map[string]*acc{}
	var order []string
	for _, e := range events {
		var w float64
		switch e.Type {
		case catalog.EventComplete:
			w = weightComplete
		case catalog.EventLike:
			w = weightLike
		case catalog.EventView:
			d := float64(durations[e.LessonID]) / 1000
			if d <= 0 {
				d = assumedDurationS
			}
			f := math.Min(1, e.WatchSeconds/d)
			if f < minViewFraction {
				continue
			}
			w = weightView * f
		case catalog.EventDislike:
			w = weightDislike
		case catalog.EventSkip:
			w = weightSkip
		default:
			continue
		}
		age := now.Sub(e.At)
		if age < 0 {
			age = 0
		}
		w *= math.Exp2(-age.Hours() / halfLife.Hours())
		a := by[e.LessonID]
		if a == nil {
			a = &acc{}
			by[e.LessonID] = a
			order = append(order, e.LessonID)
		}
		a.w += w
		if math.Abs(w) > a.kindW || !a.present {
			a.kind, a.kindW, a.present = e.Type, math.Abs(w), true
		}
	}
	out := make([]Signal, 0, len(by))
	for _, id := range order {
		a := by[id]
		if math.Abs(a.w) < 1e-9 {
			continue
		}
		out = append(out, Signal{LessonID: id, Weight: a.w, Kind: a.kind})
	}
	sort.SliceStable(out, func(i, j int) bool { return math.Abs(out[i].Weight) > math.Abs(out[j].Weight) })
	return out
}

// ProfileVector is the query for a user: the weighted mean of the positive
// lessons' vectors, pushed away from the weighted mean of the negative ones
// as Qdrant's average_vector strategy does: 2*avg(pos) - avg(neg). Without
// positives it returns nil (the caller falls back to cold start): a profile
// made only of "not this" points nowhere useful. vectors holds the lessons'
// vectors; signals without one (not indexed) are skipped.
func ProfileVector(signals []Signal, vectors map[string][]float32) []float32 {
	var pos, neg []float64
	var posW, negW float64
	add := func(dst *[]float64, v []float32, w float64) {
		if *dst == nil {
			*dst = make([]float64, len(v))
		}
		if len(*dst) != len(v) {
			return
		}
		for i, x := range v {
			(*dst)[i] += w * float64(x)
		}
	}
	for _, s := range signals {
		v, ok := vectors[s.LessonID]
		if !ok {
			continue
		}
		if s.Weight > 0 {
			add(&pos, v, s.Weight)
			posW += s.Weight
		} else {
			add(&neg, v, -s.Weight)
			negW += -s.Weight
		}
	}
	if posW == 0 || pos == nil {
		return nil
	}
	out := make([]float32, len(pos))
	for i := range pos {
		x := pos[i] / posW
		if negW > 0 && len(neg) == len(pos) {
			x = 2*x - neg[i]/negW
		}
		out[i] = float32(x)
	}
	var n float64
	for _, x := range out {
		n += float64(x) * float64(x)
	}
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return nil
	}
	n = math.Sqrt(n)
	for i := range out {
		out[i] = float32(float64(out[i]) / n)
	}
	return out
}

// cosine of two vectors of the same length (the store's are unit length,
// so this is their dot product divided by norms that are ~1).
func cosine(a, b []float32) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return 0
	}
	// Four float32 lanes: MMR and reasons call this a few thousand times
	// per answer on 1024-d vectors, and ranking needs no float64 precision.
	var d0, d1, d2, d3, na0, na1, nb0, nb1 float32
	b = b[:len(a)]
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0 += a[i] * b[i]
		d1 += a[i+1] * b[i+1]
		d2 += a[i+2] * b[i+2]
		d3 += a[i+3] * b[i+3]
		na0 += a[i]*a[i] + a[i+2]*a[i+2]
		na1 += a[i+1]*a[i+1] + a[i+3]*a[i+3]
		nb0 += b[i]*b[i] + b[i+2]*b[i+2]
		nb1 += b[i+1]*b[i+1] + b[i+3]*b[i+3]
	}
	for ; i < len(a); i++ {
		d0 += a[i] * b[i]
		na0 += a[i] * a[i]
		nb0 += b[i] * b[i]
	}
	dot, na, nb := float64(d0+d1+d2+d3), float64(na0+na1), float64(nb0+nb1)
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// MMR picks n of the candidates in order, each maximising
// lambda*relevance - (1-lambda)*(max cosine to those already picked): the
// maximal marginal relevance of Carbonell and Goldstein. lambda = 1 is plain
// relevance order. It returns indexes into rel.
func MMR(rel []float64, vecs [][]float32, n int, lambda float64) []int {
	n = min(n, len(rel))
	picked := make([]int, 0, n)
	used := make([]bool, len(rel))
	maxSim := make([]float64, len(rel))
	for i := range maxSim {
		maxSim[i] = math.Inf(-1)
	}
	for len(picked) < n {
		best, bestScore := -1, math.Inf(-1)
		for i := range rel {
			if used[i] {
				continue
			}
			s := lambda * rel[i]
			if len(picked) > 0 {
				s -= (1 - lambda) * maxSim[i]
			}
			if s > bestScore {
				best, bestScore = i, s
			}
		}
		used[best] = true
		picked = append(picked, best)
		for i := range rel {
			if !used[i] {
				maxSim[i] = math.Max(maxSim[i], cosine(vecs[i], vecs[best]))
			}
		}
	}
	return picked
}
