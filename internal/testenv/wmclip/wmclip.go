// Package wmclip renders watermarked test clips: a source clip re-encoded
// with every frame marked, as the watermark activity marks renditions, for
// tests of detection and leak lookup. It is apart from testenv because the
// watermark and media packages' own tests use testenv.
package wmclip

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

// Mark re-encodes src (x264 ultrafast at crf) with every frame marked with
// payload under kr's current key, on the grid the watermark activity would
// choose, into a file that lives as long as the test. It returns the file
// and the grid.
func Mark(t testing.TB, src string, kr watermark.Keyring, payload watermark.Payload, crf int) (string, watermark.Grid) {
	t.Helper()
	emb, err := watermark.NewEmbedder(kr.Current)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := media.ProbeStream(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	enc := media.EncodeOptions{CRF: crf, Preset: "ultrafast"}
	grid, err := activities.ChooseWatermarkGrid(context.Background(), src, vs, activities.GridTrial{Embedder: emb, Payload: payload, Encode: enc, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "marked.mp4")
	marker := emb.Video(payload, grid, 0)
	if _, err := media.Transcode(context.Background(), src, dst, media.TranscodeOptions{Encode: enc},
		func(f media.RawFrame) error {
			return marker.Mark(context.Background(), watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width}, f.Index)
		}); err != nil {
		t.Fatal(err)
	}
	return dst, grid
}
