package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

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
)

// ErrRecheckPolicy is the application error type of a re-check whose policy
// this worker cannot apply (unreadable, or written for another model).
const ErrRecheckPolicy = "RecheckPolicy"

var recheckVideos = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "lessonflow_recheck_videos_total", Help: "Videos re-checked in shadow, by result (changed, unchanged, error) and where the frames came from.",
}, []string{"result", "frames"})

// rechecks is the catalog's re-check part.
func (a *Activities) rechecks() (catalog.RecheckStore, error) {
	rs, ok := a.Catalog.(catalog.RecheckStore)
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("catalog %T keeps no re-check batches", a.Catalog), ErrRecheckPolicy, nil)
	}
	return rs, nil
}

// loadRecheckPolicy reads a batch's policy and checks that this worker's
// model is the one it was written for.
func (a *Activities) loadRecheckPolicy(ctx context.Context, ref recheck.PolicyRef) (*moderation.Policy, error) {
	p, err := recheck.LoadPolicy(ctx, a.Blobs, ref)
	if err != nil {
		if errors.Is(err, recheck.ErrInvalid) {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrRecheckPolicy, err)
		}
		return nil, err
	}
	if p.Model != a.Classifier.ModelID() {
		err := fmt.Errorf("policy %s is for model %s, this worker runs %s", p.Version, p.Model, a.Classifier.ModelID())
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrRecheckPolicy, err)
	}
	if err := p.CheckLabels(a.Classifier.Labels()); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrRecheckPolicy, err)
	}
	return p, nil
}

// withContext adds context to an error without hiding an application
// error's type from Temporal, which looks only at the error returned, not at
// what it wraps: a wrapped non-retryable error would be retried.
func withContext(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.NonRetryable() {
		return temporal.NewNonRetryableApplicationError(msg+": "+appErr.Message(), appErr.Type(), err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// RecheckBatchInput describes a batch.
type RecheckBatchInput struct {
	BatchID     string            `json:"batch_id"`
	Policy      recheck.PolicyRef `json:"policy"`
	States      []catalog.State   `json:"states"`
	RequestedBy string            `json:"requested_by"`
}

// BeginRecheck checks that this worker can apply the batch's policy and
// records the batch (once, however often it is retried).
func (a *Activities) BeginRecheck(ctx context.Context, in RecheckBatchInput) error {
	rs, err := a.rechecks()
	if err != nil {
		return err
	}
	p, err := a.loadRecheckPolicy(ctx, in.Policy)
	if err != nil {
		return withContext(err, "begin recheck %s", in.BatchID)
	}
	_, _, err = rs.CreateRecheckBatch(ctx, catalog.RecheckBatch{
		ID: in.BatchID, PolicyVersion: p.Version, PolicySHA256: in.Policy.SHA256, PolicyKey: in.Policy.Key,
		ModelID: a.Classifier.ModelID(), States: in.States, RequestedBy: in.RequestedBy,
	})
	if errors.Is(err, catalog.ErrInvalid) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("begin recheck %s: %v", in.BatchID, err), ErrRecheckPolicy, err)
	}
	if err != nil {
		return fmt.Errorf("begin recheck %s: %w", in.BatchID, err)
	}
	return nil
}

// FinishRecheckInput ends a batch.
type FinishRecheckInput struct {
	BatchID string `json:"batch_id"`
	State   string `json:"state"` // catalog.RecheckCompleted or catalog.RecheckFailed
	Error   string `json:"error"`
}

// FinishRecheck records how a batch ended.
func (a *Activities) FinishRecheck(ctx context.Context, in FinishRecheckInput) error {
	rs, err := a.rechecks()
	if err != nil {
		return err
	}
	if err := rs.FinishRecheckBatch(ctx, in.BatchID, in.State, in.Error); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return nil // the batch failed before BeginRecheck recorded it
		}
		return fmt.Errorf("finish recheck %s: %w", in.BatchID, err)
	}
	return nil
}

// RecheckPageInput asks for one page of the videos in one state.
type RecheckPageInput struct {
	State  catalog.State `json:"state"`
	Cursor string        `json:"cursor"`
	Limit  int           `json:"limit"`
}

// RecheckPage is a page of video ids and the cursor of the next ("" at the end).
type RecheckPage struct {
	VideoIDs []string `json:"video_ids"`
	Next     string   `json:"next"`
}

// ListRecheckPage lists a page of videos for a batch to walk.
func (a *Activities) ListRecheckPage(ctx context.Context, in RecheckPageInput) (RecheckPage, error) {
	vs, next, err := a.Catalog.ListVideos(ctx, catalog.ListQuery{State: in.State, Limit: in.Limit, Cursor: in.Cursor})
	if err != nil {
		if errors.Is(err, catalog.ErrBadCursor) || errors.Is(err, catalog.ErrInvalid) {
			return RecheckPage{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrRecheckPolicy, err)
		}
		return RecheckPage{}, fmt.Errorf("list %s videos: %w", in.State, err)
	}
	page := RecheckPage{VideoIDs: make([]string, 0, len(vs)), Next: next}
	for _, v := range vs {
		page.VideoIDs = append(page.VideoIDs, v.ID)
	}
	return page, nil
}

// RecheckVideoInput asks for one video's shadow re-check.
type RecheckVideoInput struct {
	BatchID string            `json:"batch_id"`
	VideoID string            `json:"video_id"`
	Policy  recheck.PolicyRef `json:"policy"`
}

// RecheckVideoResult is the small summary the workflow needs; the diff
// itself (segments, per-signal scores) is in the catalog.
type RecheckVideoResult struct {
	VideoID string `json:"video_id"`
	// Recorded is false when the video could not be recorded at all (it was
	// deleted); Repeat is true when an earlier attempt or page recorded it.
	Recorded     bool   `json:"recorded"`
	Repeat       bool   `json:"repeat,omitempty"`
	Old          string `json:"old"`
	New          string `json:"new"`
	Changed      bool   `json:"changed"`
	NeedsReview  bool   `json:"needs_review"`
	Error        string `json:"error,omitempty"`
	ReviewItemID string `json:"review_item_id,omitempty"`
	Frames       string `json:"frames,omitempty"`
	// Reason (one line, the queue) and Diff (the item page) say what
	// changed and why, for the review item.
	Reason string `json:"reason,omitempty"`
	Diff   string `json:"diff,omitempty"`
}

// RecheckVideo re-classifies one video in shadow under the batch's policy
// and records the diff. It never changes the video: no state, stage or
// decision of the video is written, and frames it samples again go under
// the batch's own prefix. Stored frames are re-used when the new policy
// samples the same way, and stored scores too when the model is unchanged.
func (a *Activities) RecheckVideo(ctx context.Context, in RecheckVideoInput) (RecheckVideoResult, error) {
	out := RecheckVideoResult{VideoID: in.VideoID}
	rs, err := a.rechecks()
	if err != nil {
		return out, err
	}
	if prev, err := rs.GetRecheckResult(ctx, in.BatchID, in.VideoID); err == nil {
		return summarize(prev, true), nil
	} else if !errors.Is(err, catalog.ErrNotFound) {
		return out, fmt.Errorf("recheck %s: %w", in.VideoID, err)
	}
	p, err := a.loadRecheckPolicy(ctx, in.Policy)
	if err != nil {
		return out, withContext(err, "recheck %s", in.VideoID)
	}
	v, err := a.Catalog.GetVideo(ctx, in.VideoID)
	if errors.Is(err, catalog.ErrNotFound) {
		out.Error = "the video no longer exists"
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("recheck %s: %w", in.VideoID, err)
	}
	ds, err := a.Catalog.Decisions(ctx, in.VideoID)
	if err != nil {
		return out, fmt.Errorf("recheck %s: %w", in.VideoID, err)
	}
	last := recheck.LastModelDecision(ds)
	res := catalog.RecheckResult{
		BatchID: in.BatchID, VideoID: v.ID, VideoState: v.State,
		ModelID: a.Classifier.ModelID(), ModelSHA256: a.Classifier.ModelSHA256(), PolicyVersion: p.Version,
	}
	if last != nil {
		res.OldPolicyVersion, res.OldModelSHA256 = last.PolicyVersion, last.ModelSHA256
	}
	res.OldOutcome = string(recheck.Compare(v.State, last, "").Old)

	frames, source, err := a.shadowScores(ctx, in.BatchID, v, p)
	var noInput *noInputError
	switch {
	case errors.As(err, &noInput):
		res.Error = noInput.Error()
	case err != nil:
		return out, fmt.Errorf("recheck %s: %w", in.VideoID, err)
	case recheck.Current(v.State) == "":
		res.Error = fmt.Sprintf("the video is %s now, not a decided video", v.State)
	default:
		d := p.Decide(frames)
		verdict := recheck.Compare(v.State, last, d.Outcome)
		res.NewOutcome, res.NewReason, res.Changed, res.Frames = string(d.Outcome), d.Reason, verdict.Changed, source
		res.Segments, _ = json.Marshal(d.Segments)
		res.Scores, _ = json.Marshal(d.Signals)
	}
	stored, inserted, err := rs.RecordRecheckResult(ctx, res)
	if err != nil {
		return out, fmt.Errorf("recheck %s: %w", in.VideoID, err)
	}
	out = summarize(stored, !inserted)
	if !out.NeedsReview && source == catalog.FramesResampled {
		// Frames sampled again are kept only as a changed verdict's evidence.
		if err := a.Blobs.DeletePrefix(ctx, recheck.ShadowPrefix(in.BatchID, in.VideoID)); err != nil {
			activity.GetLogger(ctx).Warn("remove shadow frames", "video", in.VideoID, "error", err)
		}
	}
	label := "unchanged"
	switch {
	case stored.Error != "":
		label = "error"
	case stored.Changed:
		label = "changed"
	}
	recheckVideos.WithLabelValues(label, stored.Frames).Inc()
	return out, nil
}

// summarize turns a stored result into what the workflow needs.
func summarize(r catalog.RecheckResult, repeat bool) RecheckVideoResult {
	out := RecheckVideoResult{VideoID: r.VideoID, Recorded: true, Repeat: repeat, Old: r.OldOutcome, New: r.NewOutcome,
		Changed: r.Changed, Error: r.Error, ReviewItemID: r.ReviewItemID, Frames: r.Frames}
	if r.Error == "" {
		out.NeedsReview = recheck.Compare(r.VideoState, &catalog.Decision{Outcome: r.OldOutcome}, moderation.Outcome(r.NewOutcome)).NeedsReview
		out.Reason = fmt.Sprintf("re-check: %s under %s, was %s (video is %s)", r.NewOutcome, r.PolicyVersion, r.OldOutcome, r.VideoState)
		out.Diff = fmt.Sprintf("Policy %s with model %s decides %s; the video was %s under %s and is %s now. %s%s",
			r.PolicyVersion, short(r.ModelSHA256), r.NewOutcome, r.OldOutcome, orUnknown(r.OldPolicyVersion), r.VideoState,
			r.NewReason, segmentSummary(r.Segments))
	}
	return out
}

// segmentSummary lists a verdict's segments in words for the review item.
func segmentSummary(raw json.RawMessage) string {
	var segs []moderation.Segment
	if json.Unmarshal(raw, &segs) != nil || len(segs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" Segments:")
	for i, sg := range segs {
		if i == 10 {
			fmt.Fprintf(&b, " and %d more.", len(segs)-i)
			break
		}
		fmt.Fprintf(&b, " %s %s %.1f-%.1f s (peak %.2f, %d frames);", sg.Signal, sg.Action,
			float64(sg.StartMS)/1000, float64(sg.EndMS)/1000, sg.PeakScore, sg.Frames)
	}
	return strings.TrimSuffix(b.String(), ";")
}

func short(sha string) string { return sha[:min(12, len(sha))] }

func orUnknown(s string) string {
	if s == "" {
		return "an unknown policy"
	}
	return s
}

// noInputError: nothing is left to re-classify the video from.
type noInputError struct{ reason string }

func (e *noInputError) Error() string { return e.reason }

// shadowScores returns every frame score the new policy decides on (coarse
// and, where it asks for them, dense) and where the frames came from.
func (a *Activities) shadowScores(ctx context.Context, batchID string, v catalog.Video, p *moderation.Policy) ([]moderation.FrameScore, string, error) {
	if v.Media == nil {
		return nil, "", &noInputError{"the video was never probed"}
	}
	info := *v.Media
	uploadKept := false
	if v.BlobKey != "" {
		if _, err := a.Blobs.Stat(ctx, v.BlobKey); err == nil {
			uploadKept = true
		} else if !errors.Is(err, blob.ErrNotFound) {
			return nil, "", err
		}
	}
	ref := VideoRef{VideoID: v.ID, BlobKey: v.BlobKey}
	shadow := recheck.ShadowPrefix(batchID, v.ID)
	source := catalog.FramesStored

	// Coarse pass: the stored frames when the policy samples as before.
	coarse, err := a.storedScores(ctx, v.ID, false, p.Sampling)
	if err != nil {
		return nil, "", err
	}
	if coarse == nil {
		if !uploadKept {
			return nil, "", &noInputError{"the stored frames were sampled differently (or removed) and the upload is gone"}
		}
		frames, err := a.sampleShadow(ctx, ref, shadow, false, p.Sampling, func(emit func(media.Frame) error, src string) error {
			return media.SampleFrames(ctx, src, info, p.Sampling, emit)
		})
		if err != nil {
			return nil, "", fmt.Errorf("sample %s again: %w", v.ID, err)
		}
		if coarse, err = a.scoreFrames(ctx, frames, false); err != nil {
			return nil, "", err
		}
		source = catalog.FramesResampled
	}

	windows := p.RescanWindows(coarse, info.DurationMS)
	all := coarse
	if len(windows) == 0 {
		return all, source, nil
	}
	// Dense pass: stored dense frames when they cover the new windows.
	dense, err := a.storedScores(ctx, v.ID, true, p.Sampling)
	if err != nil {
		return nil, "", err
	}
	var pts []int64
	for _, f := range dense {
		pts = append(pts, f.PTSMS)
	}
	covered := dense != nil && recheck.Covered(windows, pts, p.Sampling.DenseFPS)
	if covered || !uploadKept {
		if !covered {
			// Decide sends flagged frames without dense neighbours to review.
			source = catalog.FramesPartial
		}
		for _, f := range dense {
			if recheck.InWindows(f.PTSMS, windows) {
				all = append(all, f)
			}
		}
		return all, source, nil
	}
	frames, err := a.sampleShadow(ctx, ref, shadow, true, p.Sampling, func(emit func(media.Frame) error, src string) error {
		return media.SampleWindows(ctx, src, info, windows, p.Sampling, emit)
	})
	if err != nil {
		return nil, "", fmt.Errorf("dense sample %s again: %w", v.ID, err)
	}
	scores, err := a.scoreFrames(ctx, frames, true)
	if err != nil {
		return nil, "", err
	}
	return append(all, scores...), catalog.FramesResampled, nil
}

// storedScores returns the scores of a video's stored frames of one pass,
// or nil when they cannot stand in for a new pass: missing, or sampled with
// other settings. Scores of the same model are re-used; otherwise the
// stored frames are classified again (in memory, nothing is written).
func (a *Activities) storedScores(ctx context.Context, videoID string, dense bool, s media.SamplerSettings) ([]moderation.FrameScore, error) {
	var m frameManifest
	err := getJSON(ctx, a.Blobs, path.Join(framesPrefix(videoID), pass(dense)+".json"), "", &m)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stored frames of %s: %w", videoID, err)
	}
	if m.Sampler != s.WithDefaults() {
		return nil, nil
	}
	var sf scoreFile
	err = getJSON(ctx, a.Blobs, path.Join(scoresPrefix(videoID), pass(dense)+".json"), "", &sf)
	switch {
	case err == nil && sf.ModelSHA256 == a.Classifier.ModelSHA256() && len(sf.Frames) == len(m.Frames):
		return nonNil(sf.Frames), nil
	case err != nil && !errors.Is(err, blob.ErrNotFound):
		return nil, fmt.Errorf("read stored scores of %s: %w", videoID, err)
	}
	for _, f := range m.Frames {
		if _, err := a.Blobs.Stat(ctx, f.Key); errors.Is(err, blob.ErrNotFound) {
			return nil, nil // the frames were removed: sample again
		}
	}
	return a.scoreFrames(ctx, m.Frames, dense)
}

func nonNil(fs []moderation.FrameScore) []moderation.FrameScore {
	if fs == nil {
		return []moderation.FrameScore{}
	}
	return fs
}

// scoreFrames classifies frames in memory, one batch ahead as Classify does,
// heartbeating the count.
func (a *Activities) scoreFrames(ctx context.Context, frames []storedFrame, dense bool) ([]moderation.FrameScore, error) {
	c := a.Classifier
	labels := len(c.Labels())
	out := make([]moderation.FrameScore, 0, len(frames))
	batches := make(chan preparedBatch, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.prepareBatches(ctx, frames, batches)
	for b := range batches {
		if b.err != nil {
			return nil, b.err
		}
		probs, err := c.RunPreprocessed(b.tensor, len(b.frames))
		if err != nil {
			return nil, err
		}
		for i, f := range b.frames {
			out = append(out, moderation.FrameScore{PTSMS: f.PTSMS, Dense: dense, Scores: probs[i*labels : (i+1)*labels]})
		}
		framesClassified.Add(float64(len(b.frames)))
		activity.RecordHeartbeat(ctx, len(out))
	}
	if len(out) != len(frames) {
		return nil, fmt.Errorf("%d of %d frames scored", len(out), len(frames))
	}
	return out, nil
}

// sampleShadow samples frames into a batch's own prefix (never over the
// pipeline's frames) and stores their manifest next to them.
func (a *Activities) sampleShadow(ctx context.Context, ref VideoRef, prefix string, dense bool, s media.SamplerSettings,
	sample func(emit func(media.Frame) error, src string) error) ([]storedFrame, error) {
	// Not counted in framesSampled: that counts the pipeline's frames.
	m, _, _, err := a.sampleToBlobs(ctx, ref, prefix, dense, s, sample, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	return m.Frames, nil
}

// RecheckReviewInput records the review item a changed verdict went to.
type RecheckReviewInput struct {
	BatchID string `json:"batch_id"`
	VideoID string `json:"video_id"`
	ItemID  string `json:"item_id"`
}

// RecordRecheckReview records that a changed verdict was sent to review.
func (a *Activities) RecordRecheckReview(ctx context.Context, in RecheckReviewInput) error {
	rs, err := a.rechecks()
	if err != nil {
		return err
	}
	if err := rs.SetRecheckReviewItem(ctx, in.BatchID, in.VideoID, in.ItemID); err != nil {
		return fmt.Errorf("record review of %s: %w", in.VideoID, err)
	}
	return nil
}

// RecheckCounts sums up a batch's recorded results: the numbers its
// progress shows, counted once per video however often a page was retried.
func (a *Activities) RecheckCounts(ctx context.Context, batchID string) (catalog.RecheckCounts, error) {
	rs, err := a.rechecks()
	if err != nil {
		return catalog.RecheckCounts{}, err
	}
	c, err := rs.RecheckCounts(ctx, batchID)
	if err != nil {
		return c, fmt.Errorf("count recheck %s: %w", batchID, err)
	}
	return c, nil
}

// OpenRecheckReview returns the id of the video's open (undecided) review
// item of kind recheck, from any batch, or "" if there is none: a video
// waits in the queue for one re-check review at a time.
func (a *Activities) OpenRecheckReview(ctx context.Context, videoID string) (string, error) {
	rs, err := a.reviews()
	if err != nil {
		return "", err
	}
	q := catalog.ReviewQuery{VideoID: videoID, Limit: 100}
	for {
		items, next, err := rs.ListReviewItems(ctx, q)
		if err != nil {
			return "", fmt.Errorf("open re-check review of %s: %w", videoID, err)
		}
		for _, it := range items {
			if it.Kind == review.KindRecheck && it.State != review.StateDecided {
				return it.ID, nil
			}
		}
		if next == "" {
			return "", nil
		}
		q.Cursor = next
	}
}
