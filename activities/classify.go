package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/jpeg"
	"path"

	"go.temporal.io/sdk/activity"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/moderation"
)

// maxFrameBytes bounds one stored frame read back for classification.
const maxFrameBytes = 16 << 20

// decodeBatch frames are decoded ahead of each model call (the classifier
// batches them by its own size).
const decodeBatch = 8

// ScoreSet references stored per-frame scores.
type ScoreSet struct {
	Key         string `json:"key"`
	SHA256      string `json:"sha256"`
	Count       int    `json:"count"`
	ModelID     string `json:"model_id"`
	ModelSHA256 string `json:"model_sha256"`
}

// Classify runs the explicit-content model over a FrameSet and stores the
// per-frame probabilities. Frames are decoded one batch ahead of the model so
// JPEG decoding overlaps inference.
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

	batches := make(chan decodedBatch, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.decodeFrames(ctx, m.Frames, decodeBatch, batches)
	for b := range batches {
		if b.err != nil {
			return ss, fmt.Errorf("classify %s: %w", m.VideoID, b.err)
		}
		probs, err := c.Classify(ctx, b.imgs)
		if err != nil {
			return ss, fmt.Errorf("classify %s: %w", m.VideoID, err)
		}
		for i, p := range probs {
			out.Frames = append(out.Frames, moderation.FrameScore{PTSMS: b.frames[i].PTSMS, Dense: fs.Dense, Scores: p})
		}
		framesClassified.Add(float64(len(probs)))
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

type decodedBatch struct {
	frames []storedFrame
	imgs   []image.Image
	err    error
}

func (a *Activities) decodeFrames(ctx context.Context, frames []storedFrame, size int, out chan<- decodedBatch) {
	defer close(out)
	for start := 0; start < len(frames); start += size {
		b := decodedBatch{frames: frames[start:min(start+size, len(frames))]}
		for _, f := range b.frames {
			img, err := a.decodeFrame(ctx, f)
			if err != nil {
				b.err = err
				break
			}
			b.imgs = append(b.imgs, img)
		}
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
