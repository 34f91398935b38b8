package activities

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

// heartbeatEvery is how often the watermark pass heartbeats (the SDK
// throttles what it sends to a fraction of the heartbeat timeout anyway).
const heartbeatEvery = 2 * time.Second

// StageWatermark is the stage that marks every frame of an approved video.
const StageWatermark = "watermark"

// ErrWatermarkConfig is the application error type of a watermark pass that
// no retry can fix: no key configured, the video's key gone from the
// keyring, a frame too small to carry a mark.
const ErrWatermarkConfig = "WatermarkConfig"

var framesMarked = promauto.NewCounter(prometheus.CounterOpts{
	Name: "lessonflow_frames_watermarked_total",
	Help: "Frames marked and encoded by the watermark pass.",
})

// RenditionKey is where a video's marked rendition is stored.
func RenditionKey(videoID string) string { return "renditions/" + videoID + "/watermarked.mp4" }

// renditionWorkPrefix holds the finished segments of a pass in progress.
func renditionWorkPrefix(videoID string) string { return "renditions/" + videoID + "/work/" }

// WatermarkInput asks for the watermark pass over an approved video.
type WatermarkInput struct {
	VideoRef
}

// WatermarkResult references the stored rendition.
type WatermarkResult struct {
	RenditionKey string `json:"rendition_key"`
	SHA256       string `json:"sha256"`
	SizeBytes    int64  `json:"size_bytes"`
	Payload      string `json:"payload"` // the registry id, 16 hex digits
	KeyID        string `json:"key_id"`
	Frames       int    `json:"frames"`
	Grid         string `json:"grid"`                       // watermark.Grid the frames were marked on
	Resumed      int    `json:"resumed_segments,omitempty"` // segments a previous attempt had finished
	// Seeked: the pass reached its first unfinished segment by an input
	// seek instead of decoding and dropping the finished ones.
	Seeked bool `json:"resume_seeked,omitempty"`
}

// watermarkProgress is the heartbeat detail: which plan the finished
// segments belong to and how many there are, a few dozen bytes however long
// the video. The durable record of finished segments is the blob store
// itself (see finishedSegments), so a retry resumes even when the SDK's
// throttling kept the last heartbeat from reaching the server.
type watermarkProgress struct {
	Plan       string `json:"plan"`
	Grid       string `json:"grid,omitempty"` // the grid chosen: a retry reuses it instead of a new trial
	Segments   int    `json:"segments"`       // finished: 0..Segments-1
	LastFrames int    `json:"last_frames"`    // frames of the last finished segment
	Frames     int    `json:"frames"`         // frames handed to the encoder so far

	keys []string // stored segments found at the start (not a heartbeat detail)
	next string   // the last stored segment's media.Segment.Next, if its name has it
}

// segName is a stored segment's name: seg-<index>-<frames>[-<next>].mp4,
// next being media.Segment.Next: the fingerprint of the source frame after
// the segment, which lets a retry seek to it instead of decoding the video
// up to there.
var segName = regexp.MustCompile(`^seg-([0-9]{6})-([0-9]{1,7})(?:-([0-9a-f]{16}))?\.mp4$`)

// segmentKey is where segment s is stored under prefix (see segName).
func segmentKey(prefix string, s media.Segment) string {
	if s.Next == "" {
		return fmt.Sprintf("%sseg-%06d-%d.mp4", prefix, s.Index, s.Frames)
	}
	return fmt.Sprintf("%sseg-%06d-%d-%s.mp4", prefix, s.Index, s.Frames, s.Next)
}

// finishedSegments lists the segments a previous attempt stored under
// prefix: the run of seg-<index>-<frames>[-<next>].mp4 from index 0 in
// which every segment but the last is full (only the video's end makes a
// short one).
// A whole pass (media.TranscodeOptions.Whole) stores one segment of any
// length, which is the finished rendition.
func (a *Activities) finishedSegments(ctx context.Context, prefix string, segFrames int, whole bool) (watermarkProgress, error) {
	infos, err := a.Blobs.List(ctx, prefix)
	if err != nil {
		return watermarkProgress{}, fmt.Errorf("list finished segments: %w", err)
	}
	frames := map[int]int{}
	keys, nexts := map[int]string{}, map[int]string{}
	for _, in := range infos {
		m := segName.FindStringSubmatch(strings.TrimPrefix(in.Key, prefix))
		if m == nil {
			continue
		}
		i, _ := strconv.Atoi(m[1])
		n, err := strconv.Atoi(m[2])
		if err != nil || n <= 0 || (n > segFrames && !whole) {
			continue
		}
		frames[i], keys[i], nexts[i] = n, in.Key, m[3]
	}
	var p watermarkProgress
	for i := 0; ; i++ {
		n, ok := frames[i]
		if !ok {
			break
		}
		p.Segments, p.LastFrames, p.next = i+1, n, nexts[i]
		p.keys = append(p.keys, keys[i])
		if n < segFrames || whole {
			break
		}
	}
	return p, nil
}

// Watermark registers the video's watermark id (idempotent: a retry gets the
// same record), marks every frame with it, encodes the H.264 rendition,
// stores it under RenditionKey and records it in the catalog.
//
// It heartbeats frame progress. Segments (media.EncodeSegments) are stored as
// they finish, under keys naming the plan (payload, key, encode settings,
// segment length) and their frame count, so a retry after a crash
// re-encodes only from the first segment not stored.
func (a *Activities) Watermark(ctx context.Context, in WatermarkInput) (res WatermarkResult, err error) {
	defer a.stage(ctx, in.VideoID, StageWatermark)(&err)
	res, err = a.watermark(ctx, in)
	if err != nil {
		var inv *media.InvalidError
		var appErr *temporal.ApplicationError
		switch {
		case errors.As(err, &inv):
			return res, temporal.NewNonRetryableApplicationError(inv.Reason, ErrInvalidMedia, err)
		case errors.As(err, &appErr):
			return res, err
		}
		return res, fmt.Errorf("watermark %s: %w", in.VideoID, err)
	}
	return res, nil
}

func (a *Activities) watermark(ctx context.Context, in WatermarkInput) (WatermarkResult, error) {
	if a.WatermarkKeys == nil {
		return WatermarkResult{}, temporal.NewNonRetryableApplicationError("no watermark key configured (LESSONFLOW_WATERMARK_KEY)", ErrWatermarkConfig, nil)
	}
	reg, ok := a.Catalog.(catalog.Registry)
	if !ok {
		return WatermarkResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("catalog %T has no watermark registry", a.Catalog), ErrWatermarkConfig, nil)
	}
	v, err := a.Catalog.GetVideo(ctx, in.VideoID)
	if err != nil {
		return WatermarkResult{}, err
	}
	rec, err := reg.RegisterWatermark(ctx, in.VideoID, v.TeacherID, a.WatermarkKeys.Current.ID)
	if err != nil {
		return WatermarkResult{}, err
	}
	// A record made before a key rotation keeps its key: the mark must be the
	// one the registry says.
	var key *watermark.Key
	for i := range a.WatermarkKeys.All {
		if a.WatermarkKeys.All[i].ID == rec.KeyID {
			key = &a.WatermarkKeys.All[i]
		}
	}
	if key == nil {
		return WatermarkResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("video %s is registered with watermark key %q, which the keyring no longer holds", in.VideoID, rec.KeyID), ErrWatermarkConfig, nil)
	}
	emb, err := watermark.NewEmbedder(*key)
	if err != nil {
		return WatermarkResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrWatermarkConfig, err)
	}
	payload := watermark.Payload(rec.ID)

	src, cleanup, err := a.localPath(ctx, in.BlobKey)
	if err != nil {
		return WatermarkResult{}, err
	}
	defer cleanup()
	vs, err := media.ProbeStream(ctx, src)
	if err != nil {
		return WatermarkResult{}, err
	}
	enc := a.Encode.WithDefaults()
	grid, err := a.watermarkGrid(ctx, src, vs, GridTrial{Embedder: emb, Payload: payload, Encode: enc, TempDir: a.TempDir})
	if err != nil {
		return WatermarkResult{}, err
	}
	segFrames := media.SegmentFrames(vs, a.SegmentSeconds)
	// A video that fits one segment is encoded straight into the rendition
	// (audio in, no mux run); a retry redoes it whole, as it would anyway.
	whole := media.FitsOneSegment(vs, segFrames)
	// Everything that shapes the segments' bytes; a retry under another plan
	// (settings changed meanwhile) starts over.
	planIn := fmt.Appendf(nil, "v1|%s|%s|%d|%s|%d|%s|%dx%d|whole=%t|grid=%s|mark=%d", payload, rec.KeyID, enc.CRF, enc.Preset, segFrames, vs.Rate, vs.Width, vs.Height, whole, grid, watermark.MarkVersion)
	// Only a tagged source's plan names its colour tags, so the plans of
	// untagged ones kept their hash when renditions began to carry tags.
	if c := vs.Colour; c != (media.Colour{}) {
		planIn = fmt.Appendf(planIn, "|colour=%s/%s/%s", c.Matrix, c.Primaries, c.Transfer)
	}
	// Likewise the motion gate, which only the block grid has.
	if grid == watermark.GridBlock && !a.NoMotionGate {
		planIn = fmt.Appendf(planIn, "|gate=%d", watermark.GateVersion)
	}
	planSum := sha256.Sum256(planIn)
	plan := hex.EncodeToString(planSum[:8])
	segPrefix := renditionWorkPrefix(in.VideoID) + plan + "/"

	prog, err := a.finishedSegments(ctx, segPrefix, segFrames, whole)
	if err != nil {
		return WatermarkResult{}, err
	}
	prog.Plan, prog.Grid = plan, grid.String()
	resumed := prog.Segments
	log := activity.GetLogger(ctx)
	if resumed > 0 || activity.HasHeartbeatDetails(ctx) {
		var beat watermarkProgress
		_ = activity.GetHeartbeatDetails(ctx, &beat)
		log.Info("watermark: resuming", "video", in.VideoID, "segments_stored", resumed, "segment_frames", segFrames,
			"last_heartbeat_segments", beat.Segments, "same_plan", beat.Plan == plan)
	}

	work, err := os.MkdirTemp(a.TempDir, "lessonflow-watermark-*")
	if err != nil {
		return WatermarkResult{}, err
	}
	defer os.RemoveAll(work)

	// Heartbeat on a clock, not only per frame: a resumed pass that cannot
	// seek decodes and drops the finished segments' frames without emitting
	// any, and the final mux and upload emit none either.
	var mu sync.Mutex // prog: the ticker, OnSegment and Progress run on different goroutines
	snapshot := func() watermarkProgress { mu.Lock(); defer mu.Unlock(); return prog }
	defer beatOnClock(ctx, snapshot)() // no heartbeat after the activity returned

	total := prog.Segments*segFrames - (segFrames - prog.LastFrames)
	// Blocks of the mark restart with every segment: a resumed pass marks
	// its segments as the first attempt did.
	marker := emb.Video(payload, grid, segFrames)
	seeked := false
	if prog.Segments == 0 || (prog.LastFrames == segFrames && !whole) {
		// The last finished segment was full: there may be more video.
		opt := media.TranscodeOptions{
			Encode: enc, SegmentSeconds: a.SegmentSeconds, Stream: &vs, Workers: a.WatermarkWorkers,
			WorkDir: work, StartSegment: prog.Segments, StartSum: prog.next, Whole: whole,
			OnSegment: func(s media.Segment) error {
				if _, err := putFile(ctx, a.Blobs, segmentKey(segPrefix, s), s.Path); err != nil {
					return fmt.Errorf("store segment %d: %w", s.Index, err)
				}
				mu.Lock()
				prog.Segments, prog.LastFrames = s.Index+1, s.Frames
				mu.Unlock()
				activity.RecordHeartbeat(ctx, snapshot())
				return nil
			},
			Progress: func(n int) {
				framesMarked.Inc()
				mu.Lock()
				prog.Frames = n
				mu.Unlock()
			},
		}
		mark, markDone := MarkPass(ctx, src, marker, vs, &opt, !a.NoMotionGate)
		tr, err := media.EncodeSegments(ctx, src, opt, func(f media.RawFrame) error {
			if err := mark(f); err != nil {
				var ge *gateError
				if ctx.Err() != nil || errors.As(err, &ge) { // the gate's decode may do better next time
					return err
				}
				return &markError{err}
			}
			return nil
		})
		markDone()
		var me *markError
		if errors.As(err, &me) { // e.g. a frame too small to carry the mark: no retry helps
			return WatermarkResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrWatermarkConfig, err)
		}
		if err != nil {
			return WatermarkResult{}, err
		}
		total, seeked = tr.Frames, tr.Seeked
	}
	done := snapshot()
	if done.Segments == 0 {
		return WatermarkResult{}, &media.InvalidError{Reason: "no frame could be decoded"}
	}

	// Gather every segment: this attempt's are in work already.
	paths := make([]string, done.Segments)
	for i := range paths {
		p := media.SegmentPath(work, i)
		if _, err := os.Stat(p); err != nil {
			key := done.keys[i]
			if err := a.fetch(ctx, key, p); err != nil {
				return WatermarkResult{}, fmt.Errorf("fetch segment %d: %w", i, err)
			}
		}
		paths[i] = p
	}
	out := paths[0]
	if !whole {
		out = filepath.Join(work, "rendition.mp4")
		if err := media.MuxSegments(ctx, src, vs, paths, out); err != nil {
			return WatermarkResult{}, err
		}
	}
	rkey := RenditionKey(in.VideoID)
	info, err := putFile(ctx, a.Blobs, rkey, out)
	if err != nil {
		return WatermarkResult{}, fmt.Errorf("store rendition: %w", err)
	}
	if err := reg.SetRendition(ctx, catalog.Rendition{VideoID: in.VideoID, BlobKey: rkey, SHA256: info.SHA256,
		SizeBytes: info.Size, Payload: rec.ID, Frames: total, Encode: enc}); err != nil {
		return WatermarkResult{}, err
	}
	if err := a.Blobs.DeletePrefix(ctx, renditionWorkPrefix(in.VideoID)); err != nil {
		log.Warn("watermark: remove finished segments", "video", in.VideoID, "error", err)
	}
	log.Info("watermark: rendition stored", "video", in.VideoID, "payload", payload.String(), "key_id", rec.KeyID,
		"grid", grid.String(), "frames", total, "bytes", info.Size, "resumed_segments", resumed, "resume_seeked", seeked)
	return WatermarkResult{RenditionKey: rkey, SHA256: info.SHA256, SizeBytes: info.Size, Payload: payload.String(),
		KeyID: rec.KeyID, Frames: total, Grid: grid.String(), Resumed: resumed, Seeked: seeked}, nil
}

// MarkPass readies a pass over src (probed as vs) to mark every frame with
// marker: it returns the transform that marks a frame in Go and, when the
// mark does not depend on the picture (the block grid), also sets
// opt.LumaOffsets, so that one ffmpeg process adds it and the frames skip
// the relay through Go (the transform is then the fallback). With gate,
// the block grid's mark leaves out the squares that keep moving, block by
// block (watermark.MotionGate; opt.OffsetBlocks instead). done ends what
// the pass started; call it once the pass is over.
func MarkPass(ctx context.Context, src string, marker *watermark.VideoMarker, vs media.VideoStream, opt *media.TranscodeOptions, gate bool) (mark func(media.RawFrame) error, done func()) {
	mark = func(f media.RawFrame) error {
		return marker.Mark(ctx, watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width}, f.Index)
	}
	if vs.Still {
		return mark, func() {}
	}
	offsets, ok := marker.Offsets(vs.DecodedSize())
	if !ok || !gate {
		opt.LumaOffsets = offsets
		return mark, func() {}
	}
	planes := newGatedPlanes(ctx, src, vs, marker)
	opt.OffsetBlocks = &media.OffsetBlocks{Frames: watermark.GateFrames, Plane: planes.Plane}
	return func(f media.RawFrame) error {
		plane, err := planes.Plane(ctx, f.Index/watermark.GateFrames)
		if err != nil {
			return &gateError{fmt.Errorf("mark frame %d: %w", f.Index, err)}
		}
		if len(plane) != f.Width*f.Height { // a stream that changed size, which the fallback is for
			return mark(f)
		}
		return watermark.AddOffsets(watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width}, plane)
	}, planes.Close
}

// gridSampleFrames keyframes, spread over the video, decide its grid.
const gridSampleFrames = 24

// gridTrialSeconds of video, marked on each grid, decide between them when
// the keyframes allow the block grid. The trial starts in the middle of
// the video, but at most gridTrialLatest seconds in: the decoder reaches
// its start by decoding and dropping every frame before it.
const (
	gridTrialSeconds = 2
	gridTrialLatest  = 10
	// gridTrialCenterPixels: frames of at least this many pixels (720p)
	// encode only their central quarter in the trial, which is then still
	// at least 640x360: a quarter of the work, and on every clip measured
	// the same choice (README, "Ninth round").
	gridTrialCenterPixels = 4 * 640 * 360
)

// GridTrial is what a trial encode needs: the embedder and payload of the
// pass, its encode settings, and a directory for the trial files. The zero
// value skips the trial.
type GridTrial struct {
	Embedder *watermark.Embedder
	Payload  watermark.Payload
	Encode   media.EncodeOptions
	TempDir  string
}

// ChooseWatermarkGrid picks the grid for the video at src (probed as vs).
// Up to gridSampleFrames of its keyframes, spread over its length, rule
// out the block grid for busy content (only keyframes are decoded: a
// fraction of a second). When they allow it but are not screen-flat
// (GridChooser.Decisive), flatness alone does not tell which grid costs
// fewer bits (README, "grid choice": an upscaled still
// camera and Sintel look equally flat, and the block grid costs the one
// +13% against the fine grid's +4-6% and saves the other two thirds), so
// with a trial the same gridTrialSeconds of the video (from the keyframe at
// or before its middle, at most gridTrialLatest seconds in) are marked on
// each grid and encoded as
// the rendition will be (from 720p, only the frames' central quarter), and
// the smaller file wins. Both grids survive the
// bench's attacks on every clip the keyframe rule lets through. The choice
// depends only on the file and the settings (x264 is deterministic for a
// given thread count); the pass heartbeats it, so a retry reuses it.
func ChooseWatermarkGrid(ctx context.Context, src string, vs media.VideoStream, trial GridTrial) (watermark.Grid, error) {
	if !watermark.BlockGridFits(vs.Width, vs.Height) {
		return watermark.GridFine, nil // nothing to choose: no decode
	}
	var gc watermark.GridChooser
	_, err := media.Decode(ctx, src, media.DecodeOptions{Keyframes: true, KeySpacing: vs.DurationSec / gridSampleFrames, MaxFrames: gridSampleFrames, Stream: &vs},
		func(f media.RawFrame) error {
			return gc.Add(watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width})
		})
	if err != nil {
		return watermark.GridFine, fmt.Errorf("choose watermark grid: %w", err)
	}
	// Screen content flat enough to be decisive skips the trial: on a
	// 10-s 1080p slide the trial cost as much as half the plain transcode.
	if gc.Grid() != watermark.GridBlock || gc.Decisive() || trial.Embedder == nil {
		return gc.Grid(), nil
	}
	// The two trials run at once: each has serial stretches (the seek's
	// decode, x264's start and flush) the other fills (a 10-s Sintel: 1.9 s
	// for both, against 4.7 s one after the other; README, "Ninth round").
	centre := vs.Width*vs.Height >= gridTrialCenterPixels
	tctx, cancel := context.WithCancel(ctx) // one failing stops the other
	defer cancel()
	var fine, block int64
	var fineErr, blockErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		if fine, fineErr = trialSize(tctx, src, vs, trial, watermark.GridFine, centre); fineErr != nil {
			cancel()
		}
	})
	if block, blockErr = trialSize(tctx, src, vs, trial, watermark.GridBlock, centre); blockErr != nil {
		cancel()
	}
	wg.Wait()
	if ctx.Err() == nil && errors.Is(fineErr, context.Canceled) {
		fineErr = nil // stopped by the block trial's failure: report that one
	}
	if err := cmp.Or(fineErr, blockErr); err != nil {
		return watermark.GridFine, err
	}
	if block <= fine {
		return watermark.GridBlock, nil
	}
	return watermark.GridFine, nil
}

// trialSize is the size of the trial's gridTrialSeconds of src marked
// on grid g and encoded with the trial's settings, only the frames'
// central quarter when centre is set.
func trialSize(ctx context.Context, src string, vs media.VideoStream, trial GridTrial, g watermark.Grid, centre bool) (int64, error) {
	dir, err := os.MkdirTemp(trial.TempDir, "lessonflow-grid-trial-*")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	start := 0
	if segs := int(vs.DurationSec / gridTrialSeconds); segs > 2 {
		start = min(segs/2, gridTrialLatest/gridTrialSeconds)
	}
	var size int64
	// One segment, from an input seek: the decoder skips what comes before
	// and nothing after it is encoded (on a 10-s Sintel, the choice's median
	// went from 5.55 to 5.06 s; the two encodes are the rest). It starts at
	// the keyframe the seek lands on: decoding on from there to the seek
	// point doubled the decode of a clip with one keyframe (Sintel's at 0).
	segFrames := media.SegmentFrames(vs, gridTrialSeconds)
	marker := trial.Embedder.Video(trial.Payload, g, segFrames)
	_, err = media.EncodeSegments(ctx, src, media.TranscodeOptions{
		Encode: trial.Encode, SegmentSeconds: gridTrialSeconds, Stream: &vs, WorkDir: dir,
		SeekSeconds: float64(start * gridTrialSeconds), SeekKeyframe: true, MaxFrames: segFrames,
		EncodeCenter: centre,
		OnSegment: func(s media.Segment) error {
			st, err := os.Stat(s.Path)
			if err != nil {
				return err
			}
			size = st.Size()
			return nil
		},
	}, func(f media.RawFrame) error {
		return marker.Mark(ctx, watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width}, f.Index)
	})
	if err != nil {
		return 0, fmt.Errorf("grid trial on %s: %w", g, err)
	}
	if size == 0 {
		return 0, fmt.Errorf("grid trial on %s: no segment written", g)
	}
	return size, nil
}

// watermarkGrid is the pass's grid: the one a previous attempt heartbeated,
// so that a retry resumes its segments, or else a new choice, heartbeating
// while the trial encodes run.
func (a *Activities) watermarkGrid(ctx context.Context, src string, vs media.VideoStream, trial GridTrial) (watermark.Grid, error) {
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) {
		var beat watermarkProgress
		if activity.GetHeartbeatDetails(ctx, &beat) == nil && beat.Grid != "" {
			if g, err := watermark.ParseGrid(beat.Grid); err == nil {
				return g, nil
			}
		}
	}
	if activity.IsActivity(ctx) {
		defer beatOnClock(ctx, func() watermarkProgress { return watermarkProgress{} })() // no stale beat after the choice
	}
	return ChooseWatermarkGrid(ctx, src, vs, trial)
}

// beatOnClock records beat() as the activity's heartbeat every
// heartbeatEvery until the returned stop is called; stop waits for the
// ticker, so no heartbeat follows it.
func beatOnClock(ctx context.Context, beat func() watermarkProgress) (stop func()) {
	stopC, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				activity.RecordHeartbeat(ctx, beat())
			case <-stopC:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(stopC); <-done }
}

// putFile stores a local file under key.
func putFile(ctx context.Context, s blob.Store, key, path string) (blob.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return blob.Info{}, err
	}
	defer f.Close()
	return s.Put(ctx, key, f)
}

// fetch copies a blob to a local file.
func (a *Activities) fetch(ctx context.Context, key, path string) error {
	rc, err := a.Blobs.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// markError is a frame the embedder refused.
type markError struct{ err error }

func (e *markError) Error() string { return e.err.Error() }
func (e *markError) Unwrap() error { return e.err }

// gateError: the motion gate's planes could not be had (its decode failed),
// which a retry may not see again.
type gateError struct{ err error }

func (e *gateError) Error() string { return e.err.Error() }
func (e *gateError) Unwrap() error { return e.err }
