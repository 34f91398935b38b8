package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recheck"
	"github.com/lessonflow/lessonflow/review"
	"github.com/lessonflow/lessonflow/webhook"
)

// ErrReviewGone is the non-retryable error type of a review about a video
// that no longer exists.
const ErrReviewGone = "ReviewVideoGone"

// maxEvidenceSegments bounds the segments an item carries (the decision log
// keeps them all); the highest-scoring ones are kept.
const maxEvidenceSegments = 20

// PrepareReviewInput asks for what a new review item needs.
type PrepareReviewInput struct {
	ItemID  string      `json:"item_id"`
	VideoID string      `json:"video_id"`
	Kind    review.Kind `json:"kind"`
	// BatchID names the re-check batch of a recheck item: its evidence is
	// that batch's verdict, not the video's old model decision.
	BatchID string `json:"batch_id,omitempty"`
}

// ReviewSetup is the item's evidence and priority inputs, and what the
// workflow needs to run the approval stages later. Small: segment
// thumbnails are blob keys.
type ReviewSetup struct {
	Evidence     review.Evidence `json:"evidence"`
	BasePriority float64         `json:"base_priority"`
	Audience     int             `json:"audience"`
	VideoState   catalog.State   `json:"video_state"`
	BlobKey      string          `json:"blob_key"`
	SHA256       string          `json:"sha256"`
	Media        media.Info      `json:"media"`
	// LastBlocker is the reviewer of the video's latest human block ("" if
	// none): an appeal must go to someone else.
	LastBlocker string `json:"last_blocker"`
}

func (a *Activities) reviews() (catalog.ReviewStore, error) {
	if a.Reviews != nil {
		return a.Reviews, nil
	}
	if rs, ok := a.Catalog.(catalog.ReviewStore); ok {
		return rs, nil
	}
	return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("catalog %T keeps no review queue", a.Catalog), "NoReviewStore", nil)
}

// ReviewerActor is how a reviewer appears in the decision log.
func ReviewerActor(reviewer string) string { return "reviewer:" + reviewer }

// PrepareReview gathers a new item's evidence: the flagged segments of the
// video's latest model decision, each with a thumbnail copied out of the
// sampled frames (so later clean-ups of frames cannot break evidence), and
// the inputs of its priority.
func (a *Activities) PrepareReview(ctx context.Context, in PrepareReviewInput) (ReviewSetup, error) {
	rs, err := a.reviews()
	if err != nil {
		return ReviewSetup{}, err
	}
	v, err := a.Catalog.GetVideo(ctx, in.VideoID)
	if errors.Is(err, catalog.ErrNotFound) {
		return ReviewSetup{}, temporal.NewNonRetryableApplicationError("video "+in.VideoID+" does not exist", ErrReviewGone, err)
	}
	if err != nil {
		return ReviewSetup{}, fmt.Errorf("prepare review %s: %w", in.ItemID, err)
	}
	ds, err := a.Catalog.Decisions(ctx, in.VideoID)
	if err != nil {
		return ReviewSetup{}, fmt.Errorf("prepare review %s: %w", in.ItemID, err)
	}
	out := ReviewSetup{VideoState: v.State, BlobKey: v.BlobKey, SHA256: v.SHA256}
	if v.Media != nil {
		out.Media = *v.Media
	}
	var model *catalog.Decision
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		if model == nil && len(d.Segments) > 0 && strings.HasPrefix(d.Actor, "model:") {
			model = &ds[i]
		}
		if out.LastBlocker == "" && d.Outcome == string(review.OutcomeBlocked) && strings.HasPrefix(d.Actor, "reviewer:") {
			out.LastBlocker = strings.TrimPrefix(d.Actor, "reviewer:")
		}
	}
	out.Evidence.Segments = []review.Segment{}
	var segs []moderation.Segment
	var frames []storedFrame
	found := false
	if in.Kind == review.KindRecheck && in.BatchID != "" {
		if found, segs, frames, err = a.recheckEvidence(ctx, in, &out.Evidence); err != nil {
			return ReviewSetup{}, fmt.Errorf("prepare review %s: %w", in.ItemID, err)
		}
	}
	if !found && model != nil {
		out.Evidence.PolicyVersion, out.Evidence.ModelID = model.PolicyVersion, model.ModelID
		if err := json.Unmarshal(model.Segments, &segs); err != nil {
			return ReviewSetup{}, fmt.Errorf("prepare review %s: segments of decision %d: %w", in.ItemID, model.Seq, err)
		}
		if frames, err = a.storedFrames(ctx, in.VideoID); err != nil {
			return ReviewSetup{}, fmt.Errorf("prepare review %s: %w", in.ItemID, err)
		}
	}
	top := 0.0
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].PeakScore > segs[j].PeakScore })
	segs = segs[:min(len(segs), maxEvidenceSegments)]
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].StartMS < segs[j].StartMS })
	for i, s := range segs {
		top = math.Max(top, s.PeakScore)
		seg := review.Segment{Signal: s.Signal, Action: string(s.Action), StartMS: s.StartMS, EndMS: s.EndMS,
			MaxScore: s.MaxScore, PeakScore: s.PeakScore}
		if f, ok := frameNear(frames, (s.StartMS+s.EndMS)/2); ok {
			key := fmt.Sprintf("evidence/%s/%s/%02d.jpg", in.VideoID, in.ItemID, i)
			if err := copyBlob(ctx, a.Blobs, f.Key, key); err != nil {
				return ReviewSetup{}, fmt.Errorf("prepare review %s: thumbnail: %w", in.ItemID, err)
			}
			seg.ThumbKey, seg.ThumbAtMS = key, f.PTSMS
		}
		out.Evidence.Segments = append(out.Evidence.Segments, seg)
	}
	blocked, total, err := rs.UploaderHistory(ctx, v.TeacherID)
	if err != nil {
		return ReviewSetup{}, fmt.Errorf("prepare review %s: %w", in.ItemID, err)
	}
	if out.Audience, err = rs.Audience(ctx, in.VideoID); err != nil {
		return ReviewSetup{}, fmt.Errorf("prepare review %s: %w", in.ItemID, err)
	}
	out.BasePriority = review.BasePriority(review.PriorityInput{Kind: in.Kind, TopScore: top,
		UploaderBlocked: blocked, UploaderTotal: total, Audience: out.Audience})
	return out, nil
}

// recheckEvidence reads a re-check item's evidence from its batch's
// result: the new verdict's segments, policy and model, and the frames
// that verdict was decided on (those sampled again under
// rechecks/<batch>/<video>/ first, then the stored ones it re-used).
// found is false when the batch recorded no verdict for the video.
func (a *Activities) recheckEvidence(ctx context.Context, in PrepareReviewInput, ev *review.Evidence) (found bool, segs []moderation.Segment, frames []storedFrame, err error) {
	rs, err := a.rechecks()
	if err != nil {
		return false, nil, nil, err
	}
	r, err := rs.GetRecheckResult(ctx, in.BatchID, in.VideoID)
	if errors.Is(err, catalog.ErrNotFound) {
		return false, nil, nil, nil
	}
	if err != nil {
		return false, nil, nil, fmt.Errorf("re-check %s result: %w", in.BatchID, err)
	}
	if r.Error != "" || r.NewOutcome == "" {
		return false, nil, nil, nil
	}
	if len(r.Segments) > 0 {
		if err := json.Unmarshal(r.Segments, &segs); err != nil {
			return false, nil, nil, fmt.Errorf("re-check %s segments: %w", in.BatchID, err)
		}
	}
	shadow := recheck.ShadowPrefix(in.BatchID, in.VideoID)
	for _, dense := range []bool{false, true} {
		var m frameManifest
		err := getJSON(ctx, a.Blobs, shadow+pass(dense)+".json", "", &m)
		if errors.Is(err, blob.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, nil, nil, err
		}
		frames = append(frames, m.Frames...)
	}
	stored, err := a.storedFrames(ctx, in.VideoID)
	if err != nil {
		return false, nil, nil, err
	}
	ev.PolicyVersion, ev.ModelID = r.PolicyVersion, r.ModelID
	return true, segs, append(frames, stored...), nil
}

// storedFrames lists the coarse and dense frames the pipeline kept; none if
// they are gone.
func (a *Activities) storedFrames(ctx context.Context, videoID string) ([]storedFrame, error) {
	var all []storedFrame
	for _, dense := range []bool{false, true} {
		var m frameManifest
		err := getJSON(ctx, a.Blobs, framesPrefix(videoID)+pass(dense)+".json", "", &m)
		if errors.Is(err, blob.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		all = append(all, m.Frames...)
	}
	return all, nil
}

func frameNear(frames []storedFrame, ms int64) (storedFrame, bool) {
	best, bestD := storedFrame{}, int64(math.MaxInt64)
	for _, f := range frames {
		d := f.PTSMS - ms
		if d < 0 {
			d = -d
		}
		if d < bestD {
			best, bestD = f, d
		}
	}
	return best, bestD != math.MaxInt64
}

func copyBlob(ctx context.Context, s blob.Store, from, to string) error {
	rc, err := s.Get(ctx, from)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = s.Put(ctx, to, rc)
	return err
}

// SaveReviewItem writes an item version to the queue's projection.
func (a *Activities) SaveReviewItem(ctx context.Context, it review.Item) error {
	rs, err := a.reviews()
	if err != nil {
		return err
	}
	if err := rs.SaveReviewItem(ctx, it); err != nil {
		return fmt.Errorf("save review item %s v%d: %w", it.ID, it.Version, err)
	}
	return nil
}

// ReviewDecisionInput is one decision on an item: the item as it is after
// the decision, the opinion taken, and what it did.
type ReviewDecisionInput struct {
	Item    review.Item     `json:"item"`
	Opinion review.Decision `json:"opinion"`
	Outcome review.Outcome  `json:"outcome"`
}

// ReviewDecisionResult is what the decision did to the video.
type ReviewDecisionResult struct {
	Seq        int64         `json:"seq"`
	VideoState catalog.State `json:"video_state"`
	// NeedsPublish: the video was approved and is not published; the
	// workflow runs the approval stages.
	NeedsPublish bool `json:"needs_publish"`
}

// ReviewDecisionKey makes a decision's log entry exactly-once: one per item
// and item version decided on.
func ReviewDecisionKey(itemID string, version int64) string {
	return fmt.Sprintf("review:%s:v%d", itemID, version)
}

// RecordReviewDecision appends the decision to the video's decision log,
// writes the item's new version, and applies a final outcome to the video
// in the same step: a block sets the state blocked and removes the lesson
// from the vector store; an approval of a video that is not published sets
// it approved. Every write is keyed or absolute, so a retry repeats nothing.
func (a *Activities) RecordReviewDecision(ctx context.Context, in ReviewDecisionInput) (ReviewDecisionResult, error) {
	it, op := in.Item, in.Opinion
	reason := op.Reason
	if op.ReasonCode != "" {
		reason = op.ReasonCode + ": " + reason
	}
	rec, _, err := a.Catalog.AppendDecision(ctx, catalog.Decision{
		VideoID: it.VideoID, Key: ReviewDecisionKey(it.ID, op.Version), Actor: ReviewerActor(op.Reviewer),
		Outcome: string(in.Outcome), Reason: strings.TrimSpace(reason),
		ModelID: it.Evidence.ModelID, PolicyVersion: it.Evidence.PolicyVersion,
		Scores:    reviewRecord(it, op),
		CreatedAt: op.DecidedAt,
	})
	if err != nil {
		return ReviewDecisionResult{}, fmt.Errorf("record review decision %s: %w", it.ID, err)
	}
	beat(ctx, "logged")
	if err := a.SaveReviewItem(ctx, it); err != nil {
		return ReviewDecisionResult{}, err
	}
	beat(ctx, "item saved")
	res := ReviewDecisionResult{Seq: rec.Seq}
	v, err := a.Catalog.GetVideo(ctx, it.VideoID)
	if err != nil {
		return res, fmt.Errorf("record review decision %s: %w", it.ID, err)
	}
	res.VideoState = v.State
	switch in.Outcome {
	case review.OutcomeBlocked:
		if err := a.block(ctx, it.VideoID, "blocked by review: "+reason); err != nil {
			return res, fmt.Errorf("record review decision %s: %w", it.ID, err)
		}
		res.VideoState = catalog.StateBlocked
	case review.OutcomeApproved:
		if v.State != catalog.StatePublished {
			if err := a.Catalog.SetState(ctx, it.VideoID, catalog.StateApproved, ""); err != nil {
				return res, fmt.Errorf("record review decision %s: %w", it.ID, err)
			}
			res.VideoState, res.NeedsPublish = catalog.StateApproved, true
		}
	}
	reviewDecisions.WithLabelValues(string(it.Kind), string(in.Outcome)).Inc()
	return res, nil
}

// beat heartbeats a short multi-write activity between its writes, so a
// dead worker is noticed by its heartbeat timeout rather than its
// start-to-close timeout. Outside an activity (direct calls) it does nothing.
func beat(ctx context.Context, step string) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, step)
	}
}

// reviewRecord is the decision log's detail of a human decision: the item,
// its kind and version, and every opinion so far.
func reviewRecord(it review.Item, op review.Decision) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"item_id": it.ID, "kind": it.Kind, "item_version": op.Version, "reason_code": op.ReasonCode,
		"decision": op.Decision, "opinions": it.Opinions, "audience": it.Audience,
	})
	return b
}

// block sets the state and takes the lesson out of recommendations: the
// state first, so that whatever serves lessons stops at once, then the
// vectors (Unindex is idempotent; a failure retries the whole activity).
func (a *Activities) block(ctx context.Context, videoID, reason string) error {
	if err := a.Catalog.SetState(ctx, videoID, catalog.StateBlocked, reason); err != nil {
		return err
	}
	beat(ctx, "blocked")
	if err := a.Unindex(ctx, videoID); err != nil {
		return fmt.Errorf("unindex %s: %w", videoID, err)
	}
	return nil
}

// UnpublishForReportsInput says how many reports a published video has.
type UnpublishForReportsInput struct {
	ItemID  string `json:"item_id"`
	VideoID string `json:"video_id"`
	Reports int    `json:"reports"`
}

// UnpublishForReports takes a published video offline pending review once
// the reports reach the policy's threshold, and logs it as a system decision.
// It reports whether the video was unpublished by this call or before.
func (a *Activities) UnpublishForReports(ctx context.Context, in UnpublishForReportsInput) (bool, error) {
	v, err := a.Catalog.GetVideo(ctx, in.VideoID)
	if err != nil {
		return false, fmt.Errorf("unpublish %s: %w", in.VideoID, err)
	}
	key := "review:" + in.ItemID + ":unpublish"
	ds, err := a.Catalog.Decisions(ctx, in.VideoID)
	if err != nil {
		return false, fmt.Errorf("unpublish %s: %w", in.VideoID, err)
	}
	for _, d := range ds {
		if d.Key == key {
			return true, nil // done by an earlier attempt
		}
	}
	if v.State != catalog.StatePublished {
		return false, nil
	}
	reason := fmt.Sprintf("unpublished pending review: %d reports", in.Reports)
	if _, _, err := a.Catalog.AppendDecision(ctx, catalog.Decision{VideoID: in.VideoID, Key: key, Actor: "system:reports",
		Outcome: string(catalog.StateNeedsReview), Reason: reason}); err != nil {
		return false, fmt.Errorf("unpublish %s: %w", in.VideoID, err)
	}
	if err := a.Catalog.SetState(ctx, in.VideoID, catalog.StateNeedsReview, reason); err != nil {
		return false, fmt.Errorf("unpublish %s: %w", in.VideoID, err)
	}
	return true, nil
}

// DeliverWebhook makes one delivery attempt of ev; the workflow's retry
// policy backs off between attempts. Without a configured URL it does
// nothing. A receiver's 4xx refusal is not retried.
func (a *Activities) DeliverWebhook(ctx context.Context, ev webhook.Event) error {
	if a.Webhook == nil || a.Webhook.URL == "" {
		return nil
	}
	err := a.Webhook.Send(ctx, ev)
	var perm *webhook.PermanentError
	if errors.As(err, &perm) {
		webhookDeliveries.WithLabelValues("refused").Inc()
		return temporal.NewNonRetryableApplicationError(err.Error(), "WebhookRefused", err)
	}
	if err != nil {
		webhookDeliveries.WithLabelValues("failed").Inc()
		return err
	}
	webhookDeliveries.WithLabelValues("delivered").Inc()
	return nil
}

var (
	reviewDecisions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lessonflow_review_decisions_total",
		Help: "Review decisions by item kind and outcome.",
	}, []string{"kind", "outcome"})
	webhookDeliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lessonflow_webhook_deliveries_total",
		Help: "Webhook delivery attempts by result (delivered, failed, refused).",
	}, []string{"result"})
)

// ReviewSettings are the review queue's rules, set per worker from the
// configuration and read by the review workflow once per run (a recorded
// local activity, so replays see the same values).
type ReviewSettings struct {
	Lease    time.Duration `json:"lease"`    // how long a claim holds
	Deadline time.Duration `json:"deadline"` // undecided for this long: escalate
	// SecondOpinionAudience: blocking a lesson with more distinct viewers
	// needs a second reviewer (0: never).
	SecondOpinionAudience int `json:"second_opinion_audience"`
	// ReportsToUnpublish: this many reports take a published video offline
	// pending review (0: reports never unpublish).
	ReportsToUnpublish int `json:"reports_to_unpublish"`
}

// DefaultReviewSettings are the defaults of the configuration.
var DefaultReviewSettings = ReviewSettings{Lease: 15 * time.Minute, Deadline: 24 * time.Hour, SecondOpinionAudience: 1000, ReportsToUnpublish: 3}

// GetReviewSettings returns the worker's review settings (defaults for
// zero fields).
func (a *Activities) GetReviewSettings(ctx context.Context) (ReviewSettings, error) {
	s := a.Review
	d := DefaultReviewSettings
	if s.Lease <= 0 {
		s.Lease = d.Lease
	}
	if s.Deadline <= 0 {
		s.Deadline = d.Deadline
	}
	return s, nil
}
