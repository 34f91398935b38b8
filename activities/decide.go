package activities

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
)

// DecideInput references every score set of a video.
type DecideInput struct {
	VideoID string                `json:"video_id"`
	Scores  []ScoreSet            `json:"scores"`
	Sampler media.SamplerSettings `json:"sampler"`
}

// DecisionSummary is what the workflow needs of a decision; the full record
// (segments, per-signal scores) lives in the catalog's decision log.
type DecisionSummary struct {
	Seq           int64              `json:"seq"`
	Outcome       moderation.Outcome `json:"outcome"`
	Reason        string             `json:"reason"`
	PolicyVersion string             `json:"policy_version"`
	Segments      int                `json:"segments"`
}

// Decide applies the policy to all scores of a video, appends the decision to
// the log (once, however often this is retried) and sets the video's state.
func (a *Activities) Decide(ctx context.Context, in DecideInput) (sum DecisionSummary, err error) {
	defer a.stage(ctx, in.VideoID, StageDecide)(&err)
	var frames []moderation.FrameScore
	var model ScoreSet
	for _, ss := range in.Scores {
		f, err := a.loadScores(ctx, ss)
		if err != nil {
			return sum, fmt.Errorf("decide %s: %w", in.VideoID, err)
		}
		if err := a.Policy.CheckLabels(f.Labels); err != nil && len(f.Frames) > 0 {
			return sum, fmt.Errorf("decide %s: %w", in.VideoID, err)
		}
		frames = append(frames, f.Frames...)
		model = ss
	}
	d := a.Policy.Decide(frames)
	segments, _ := json.Marshal(d.Segments)
	signals, _ := json.Marshal(d.Signals)
	sampler := in.Sampler
	rec, _, err := a.Catalog.AppendDecision(ctx, catalog.Decision{
		VideoID: in.VideoID, Key: DecisionKeyModeration, Actor: "model:" + model.ModelID,
		Outcome: string(d.Outcome), Reason: d.Reason,
		ModelID: model.ModelID, ModelSHA256: model.ModelSHA256, PolicyVersion: d.PolicyVersion,
		Sampler: &sampler, Segments: segments, Scores: signals,
	})
	if err != nil {
		return sum, fmt.Errorf("record decision for %s: %w", in.VideoID, err)
	}
	// A retry after a crash finds the first record and applies that, not a
	// new verdict. The decide stage finishes in the same write, so no reader
	// sees a blocked video whose decision still says running.
	outcome := moderation.Outcome(rec.Outcome)
	if err := a.Catalog.ConcludeStage(ctx, in.VideoID, StageDecide, catalog.State(outcome)); err != nil {
		return sum, fmt.Errorf("set state of %s: %w", in.VideoID, err)
	}
	decisions.WithLabelValues(string(outcome)).Inc()
	return DecisionSummary{Seq: rec.Seq, Outcome: outcome, Reason: rec.Reason, PolicyVersion: rec.PolicyVersion, Segments: len(d.Segments)}, nil
}
