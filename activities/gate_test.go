package activities

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

// scrollingEditorClip is 4 s of a dark 720p code editor whose text
// scrolls up steadily: the block grid's costliest content.
func scrollingEditorClip(t *testing.T) string {
	code := "func main() {\n    for i = 0 to 10 {\n        total += weight(i) * x(i)\n    }\n    print(total)\n}\n\n// run with go run ."
	return testenv.Clip(t, "wm-gate-editor-1280x720-25-4s.mp4", "-f", "lavfi", "-i", "color=c=0x1e1e1e:s=1280x720:r=25:d=4",
		"-vf", "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:text='"+code+"':fontsize=24:fontcolor=0xc8c8c8:x=213:y=300-t*30:line_spacing=12,"+
			"drawbox=x=0:y=0:w=160:h=ih:color=0x252526:t=fill",
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")
}

// TestGatedPlanes: the gate takes the mark out of the scrolling text's
// squares, block by block, and a decode started at a later block (a resumed
// pass, the pipe taking over) gives that block the same plane.
func TestGatedPlanes(t *testing.T) {
	ctx := context.Background()
	src := scrollingEditorClip(t)
	vs, err := media.ProbeStream(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := watermark.ParseKeyring(testKeyring)
	if err != nil {
		t.Fatal(err)
	}
	emb, _ := watermark.NewEmbedder(kr.Current)
	marker := emb.Video(0x1234, watermark.GridBlock, 0)
	full, _ := marker.Offsets(1280, 720)
	unmarked := func(p []byte) int { return bytes.Count(p, []byte{128}) - bytes.Count(full, []byte{128}) }

	from0 := newGatedPlanes(ctx, src, vs, marker)
	defer from0.Close()
	var planes [][]byte
	for b := 0; ; b++ {
		p, err := from0.Plane(ctx, b)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		planes = append(planes, p)
	}
	if len(planes) != 4 { // 100 frames: 3 blocks of 32 and one of 4
		t.Fatalf("%d planes for 100 frames, want 4", len(planes))
	}
	for b, p := range planes[:3] {
		// The text (about 450 x 300 px) scrolls in every frame pair; its
		// sparser squares move under the gate's level.
		if n := unmarked(p); n < 50_000 || n > 720*1280/4 {
			t.Fatalf("block %d: %d pixels unmarked by the gate, want the scrolling text's squares", b, n)
		}
	}
	from2 := newGatedPlanes(ctx, src, vs, marker)
	defer from2.Close()
	for b := 2; b < 4; b++ {
		p, err := from2.Plane(ctx, b)
		if err != nil || !bytes.Equal(p, planes[b]) {
			t.Fatalf("block %d from a decode started there: %v, same plane %t", b, err, bytes.Equal(p, planes[b]))
		}
	}
	// Asking for an earlier block restarts the decode there.
	if p, err := from2.Plane(ctx, 0); err != nil || !bytes.Equal(p, planes[0]) {
		t.Fatalf("block 0 after block 3: %v, same plane %t", err, bytes.Equal(p, planes[0]))
	}
}

// TestWatermarkActivityMotionGate: on the scrolling editor the gated
// rendition is smaller than the one marked everywhere, and still carries
// the payload.
func TestWatermarkActivityMotionGate(t *testing.T) {
	src := scrollingEditorClip(t)
	sizes := map[bool]int64{}
	for _, gate := range []bool{true, false} {
		fx := newWMFixtureFrom(t, src)
		fx.acts.NoMotionGate = !gate
		res, _, err := fx.run(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Grid != "block" {
			t.Fatalf("gate %t: the %s grid, want block", gate, res.Grid)
		}
		rec, _ := fx.cat.WatermarkOf(context.Background(), "v1")
		if got := fx.detect(t, res.RenditionKey); !got.Found || got.Payload != watermark.Payload(rec.ID) {
			t.Fatalf("gate %t: detect on the rendition: %+v, want %s", gate, got, rec.ID)
		}
		sizes[gate] = res.SizeBytes
	}
	if sizes[true] >= sizes[false] {
		t.Fatalf("gated rendition %d bytes, marked everywhere %d", sizes[true], sizes[false])
	}
	t.Logf("rendition: %d bytes gated, %d marked everywhere", sizes[true], sizes[false])
}
