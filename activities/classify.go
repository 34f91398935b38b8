package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"path"
	"sync"

	"go.temporal.io/sdk/activity"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/moderation"
)

// maxFrameBytes bounds one stored frame read back for classification.
const maxFrameBytes = 16 << 20

// ScoreSet references stored per-frame scores.
type ScoreSet struct {
	Key         string `json:"key"`
	SHA256      string `json:"sha256"`
	Count       int    `json:"count"`
	ModelID     string `json:"model_id"`
	ModelSHA256 string `json:"model_sha256"`
}

// Classify runs the explicit-content model over a FrameSet and stores the
// per-frame probabilities. Frames are decoded and preprocessed one batch ahead
// of the model, so that work overlaps inference.
func (a *Activities) Classify(ctx context.Context, fs FrameSet) (ss ScoreSet, err error) {
	var m frameManifest
	if err := getJSON(ctx, a.Blobs, fs.Key, fs.SHA256, &m); err != nil {
		return ss, fmt.Errorf("classify %s: %w", fs.Key, err)
	}
	name := StageClassify
	if fs.Dense {
		name = StageClassifyDense
	}
	defer a.stage(ctx, m.VideoID, name)(&err)
	c := a.Classifier
	out := scoreFile{ModelID: c.ModelID(), ModelSHA256: c.ModelSHA256(), Labels: c.Labels(),
		Frames: make([]moderation.FrameScore, 0, len(m.Frames))}

	labels := len(c.Labels())
	batches := make(chan preparedBatch, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.prepareBatches(ctx, m.Frames, batches)
	for b := range batches {
		if b.err != nil {
			return ss, fmt.Errorf("classify %s: %w", m.VideoID, b.err)
		}
		probs, err := c.RunPreprocessed(b.tensor, len(b.frames))
		if err != nil {
			return ss, fmt.Errorf("classify %s: %w", m.VideoID, err)
		}
		for i, f := range b.frames {
			out.Frames = append(out.Frames, moderation.FrameScore{PTSMS: f.PTSMS, Dense: fs.Dense, Scores: probs[i*labels : (i+1)*labels]})
		}
		framesClassified.Add(float64(len(b.frames)))
		activity.RecordHeartbeat(ctx, len(out.Frames))
	}
	if len(out.Frames) != len(m.Frames) {
		return ss, fmt.Errorf("classify %s: %d of %d frames scored", m.VideoID, len(out.Frames), len(m.Frames))
	}
	key := path.Join(scoresPrefix(m.VideoID), pass(fs.Dense)+".json")
	info, err := putJSON(ctx, a.Blobs, key, out)
	if err != nil {
		return ss, fmt.Errorf("store scores of %s: %w", m.VideoID, err)
	}
	return ScoreSet{Key: key, SHA256: info.SHA256, Count: len(out.Frames), ModelID: c.ModelID(), ModelSHA256: c.ModelSHA256()}, nil
}

// preparedBatch is frames decoded and preprocessed into one model input.
type preparedBatch struct {
	frames []storedFrame
	tensor []float32
	err    error
}

// prepareBatches reads, decodes and preprocesses frames one batch ahead of
// the model, on another core, so the model is never waiting for them.
func (a *Activities) prepareBatches(ctx context.Context, frames []storedFrame, out chan<- preparedBatch) {
	defer close(out)
	c := a.Classifier
	size, per := c.BatchSize(), c.InputSize()
	for start := 0; start < len(frames); start += size {
		b := preparedBatch{frames: frames[start:min(start+size, len(frames))]}
		b.tensor = make([]float32, len(b.frames)*per)
		b.err = a.prepare(ctx, b.frames, b.tensor, per)
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
		if b.err != nil {
			return
		}
	}
}

// prepareWorkers decode and preprocess a batch's frames side by side: the
// first batch of every stage has no model run to hide behind.
const prepareWorkers = 2

func (a *Activities) prepare(ctx context.Context, frames []storedFrame, tensor []float32, per int) error {
	errs := make([]error, len(frames))
	var wg sync.WaitGroup
	for w := range prepareWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(frames); i += prepareWorkers {
				img, err := a.decodeFrame(ctx, frames[i])
				if err != nil {
					errs[i] = err
					return
				}
				a.Classifier.Preprocess(img, tensor[i*per:(i+1)*per])
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (a *Activities) decodeFrame(ctx context.Context, f storedFrame) (image.Image, error) {
	b, err := blob.GetBytes(ctx, a.Blobs, f.Key, maxFrameBytes)
	if err != nil {
		return nil, fmt.Errorf("read frame %s: %w", f.Key, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.SHA256 {
		return nil, fmt.Errorf("frame %s does not match its manifest hash", f.Key)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("decode frame %s: %w", f.Key, err)
	}
	return img, nil
}
