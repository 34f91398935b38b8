package models

import (
	"context"
	"fmt"
	"image"
)

// Classifier runs a softmax classifier (a manifest with labels and a "probs"
// output). It is safe for concurrent use; Close it when done.
type Classifier struct {
	s *session
}

// NewClassifier verifies modelDir/m.File against m.SHA256 and opens one ONNX
// Runtime session that requests only the "probs" output. Init must have
// succeeded first.
func NewClassifier(m Manifest, modelDir string, opts Options) (*Classifier, error) {
	if len(m.Labels) == 0 {
		return nil, fmt.Errorf("load model %s: not a classifier: no labels", m.ID)
	}
	s, err := newSession(m, modelDir, probsOutput, opts)
	if err != nil {
		return nil, err
	}
	return &Classifier{s: s}, nil
}

// Classify returns, per image, the probabilities in Labels() order. Images
// go through Preprocess and run in batches of Options.BatchSize; ctx is
// checked before each batch.
func (c *Classifier) Classify(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	res, err := c.s.infer(ctx, imgs)
	if err != nil {
		return nil, fmt.Errorf("classify with %s: %w", c.s.m.ID, err)
	}
	return res, nil
}

// RunPreprocessed runs the session on n images already laid out by
// Preprocess in batch (at least n*W*H*3 floats) and returns the [n, labels]
// probabilities flattened. It skips batching and preprocessing, which is
// what the benchmarks compare Classify against.
func (c *Classifier) RunPreprocessed(batch []float32, n int) ([]float32, error) {
	return c.s.runPreprocessed(batch, n)
}

// InputSize is the number of floats one preprocessed image takes.
func (c *Classifier) InputSize() int { return c.s.inLen }

// BatchSize is how many images one model run takes at most.
func (c *Classifier) BatchSize() int { return c.s.opts.BatchSize }

// Preprocess writes img into dst (InputSize floats) as the model expects, so
// callers can prepare the next batch while RunPreprocessed runs this one.
func (c *Classifier) Preprocess(img image.Image, dst []float32) {
	Preprocess(img, c.s.m.Preprocessing, dst)
}

// Labels returns the class names, in probability order.
func (c *Classifier) Labels() []string { return append([]string(nil), c.s.m.Labels...) }

// ModelID is the manifest id, for recording which model made a decision.
func (c *Classifier) ModelID() string { return c.s.m.ID }

// ModelSHA256 is the verified sha256 of the loaded model file.
func (c *Classifier) ModelSHA256() string { return c.s.m.SHA256 }

// Close frees the session after in-flight calls finish; later calls fail
// with ErrClosed. Closing twice is a no-op.
func (c *Classifier) Close() error { return c.s.close() }
