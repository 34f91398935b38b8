package review

import (
	"math"
	"time"
)

// Priority weights. The score is a sum of plain terms so a reviewer can read
// why an item is on top:
//
//	50 × the top flagged score (0-1)
//	+ 20 × the uploader's share of blocked videos, smoothed: blocked / (total + 2)
//	+ 10 × log10(1 + audience)
//	+ 10 for a report, 5 for an appeal, 5 for a re-check
//	+ 100 once escalated
//	+ 2 per hour waiting
const (
	WeightScore     = 50.0
	WeightHistory   = 20.0
	WeightAudience  = 10.0
	EscalationBoost = 100.0
	// PerHourWaiting is linear on purpose: see Rank.
	PerHourWaiting = 2.0
)

// PriorityInput is what the score depends on besides waiting time.
type PriorityInput struct {
	Kind            Kind
	TopScore        float64 // highest flagged score, 0-1
	UploaderBlocked int     // the uploader's blocked videos
	UploaderTotal   int     // the uploader's videos
	Audience        int
}

// BasePriority is the priority of an item that has not waited yet.
func BasePriority(in PriorityInput) float64 {
	top := math.Max(0, math.Min(1, in.TopScore))
	p := WeightScore * top
	if in.UploaderTotal > 0 && in.UploaderBlocked > 0 {
		p += WeightHistory * float64(in.UploaderBlocked) / float64(in.UploaderTotal+2)
	}
	p += WeightAudience * math.Log10(1+float64(max(0, in.Audience)))
	switch in.Kind {
	case KindReport:
		p += 10
	case KindAppeal, KindRecheck:
		p += 5
	}
	return round3(p)
}

// Priority is base plus the waiting-time term at now.
func Priority(base float64, created, now time.Time) float64 {
	return round3(base + PerHourWaiting*math.Max(0, now.Sub(created).Hours()))
}

// Rank orders items by priority once and for all: because the waiting term
// grows at the same rate for every item, comparing base − rate × created
// gives the same order as comparing priorities at any instant. The catalog
// stores and paginates on it; nothing needs re-scoring as time passes.
func Rank(base float64, created time.Time) float64 {
	return base - PerHourWaiting*float64(created.UnixMicro())/float64(time.Hour/time.Microsecond)
}

// PriorityFromRank recovers the priority at now from a stored rank.
func PriorityFromRank(rank float64, now time.Time) float64 {
	return round3(rank + PerHourWaiting*float64(now.UnixMicro())/float64(time.Hour/time.Microsecond))
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
