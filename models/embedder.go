package models

import (
	"context"
	"fmt"
	"image"
)

// Embedder runs an image embedder (a manifest with an "embedding" output,
// L2-normalised, so cosine similarity is a dot product). It is safe for
// concurrent use; Close it when done.
type Embedder struct {
	s *session
}

// NewEmbedder verifies modelDir/m.File against m.SHA256 and opens one ONNX
// Runtime session that requests only the "embedding" output. The NSFW
// manifest works too (1280-d, MIT), as a fallback if the MobileNet v1
// licence is not accepted. Init must have succeeded first.
func NewEmbedder(m Manifest, modelDir string, opts Options) (*Embedder, error) {
	s, err := newSession(m, modelDir, embeddingOutput, opts)
	if err != nil {
		return nil, err
	}
	return &Embedder{s: s}, nil
}

// Embed returns one Dim()-long embedding per image, batched like Classify.
func (e *Embedder) Embed(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	res, err := e.s.infer(ctx, imgs)
	if err != nil {
		return nil, fmt.Errorf("embed with %s: %w", e.s.m.ID, err)
	}
	return res, nil
}

// Dim is the embedding length.
func (e *Embedder) Dim() int { return e.s.outDim }

// ModelID is the manifest id, for storing alongside embeddings: vectors
// from different models are not comparable.
func (e *Embedder) ModelID() string { return e.s.m.ID }

// ModelSHA256 is the verified sha256 of the loaded model file.
func (e *Embedder) ModelSHA256() string { return e.s.m.SHA256 }

// Close frees the session after in-flight calls finish; later calls fail
// with ErrClosed. Closing twice is a no-op.
func (e *Embedder) Close() error { return e.s.close() }
