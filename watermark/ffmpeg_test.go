package watermark

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lessonflow/lessonflow/internal/testenv"
)

// rawClip is decoded yuv420p video: frames of w x h luma (chroma kept for re-encoding).
type rawClip struct {
	w, h   int
	frames [][]byte // whole yuv420p frames
}

func (c *rawClip) luma(i int) Frame {
	return Frame{Y: c.frames[i][:c.w*c.h], Width: c.w, Height: c.h, Stride: c.w}
}

// decodeRaw decodes path (optionally through a filter graph) to raw yuv420p.
func decodeRaw(t testing.TB, path, vf string, maxFrames int) *rawClip {
	t.Helper()
	args := []string{"-i", path}
	if vf != "" {
		args = append(args, "-vf", vf)
	}
	if maxFrames > 0 {
		args = append(args, "-frames:v", fmt.Sprint(maxFrames))
	}
	c := &rawClip{}
	testenv.RawFrames(t, args, func(frame []byte, w, h int) {
		c.w, c.h = w, h
		c.frames = append(c.frames, bytes.Clone(frame))
	})
	return c
}

// encode writes raw frames to an H.264 (or other codec) file with ffmpeg args.
func encode(t testing.TB, c *rawClip, fps string, codecArgs ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.mp4")
	args := []string{"-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
		"-s", fmt.Sprintf("%dx%d", c.w, c.h), "-r", fps, "-i", "-"}
	args = append(append(args, codecArgs...), out)
	cmd := exec.Command("ffmpeg", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range c.frames {
		if _, err := in.Write(f); err != nil {
			t.Fatalf("encode: %v\n%s", err, stderr.String())
		}
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("encode: %v\n%s", err, stderr.String())
	}
	return out
}

// x264Args are the experiments' x264 arguments at crf: veryfast, yuv420p.
func x264Args(crf string) []string {
	return []string{"-c:v", "libx264", "-preset", "veryfast", "-crf", crf, "-pix_fmt", "yuv420p"}
}

// markClip marks every frame of c on the grid a GridChooser picks from
// every eighth frame, as the video pass does from keyframes (WM_GRID=fine
// or block forces one, for the experiments), and returns the grid.
func markClip(t testing.TB, e *Embedder, c *rawClip, p Payload) Grid {
	t.Helper()
	var gc GridChooser
	for i := 0; i < len(c.frames); i += 8 {
		if err := gc.Add(c.luma(i)); err != nil {
			t.Fatal(err)
		}
	}
	g := gc.Grid()
	if s := os.Getenv("WM_GRID"); s != "" {
		var err error
		if g, err = ParseGrid(s); err != nil {
			t.Fatal(err)
		}
	}
	markVideo(t, e, c, p, g)
	return g
}

// markVideo marks every frame of c in place, as one video on grid g.
func markVideo(t testing.TB, e *Embedder, c *rawClip, p Payload, g Grid) {
	t.Helper()
	m := e.Video(p, g, 0)
	for i := range c.frames {
		if err := m.Mark(context.Background(), c.luma(i), i); err != nil {
			t.Fatal(err)
		}
	}
}

func detectClip(t testing.TB, kr Keyring, c *rawClip, from, n int) Result {
	t.Helper()
	d := NewDetector(kr)
	for i := from; i < min(from+n, len(c.frames)); i++ {
		if err := d.Add(c.luma(i)); err != nil {
			t.Fatal(err)
		}
	}
	return d.Result()
}

// videoTest skips a test that encodes video in -short runs, and gives it
// the test keyring and its embedder.
func videoTest(t *testing.T) (Keyring, *Embedder) {
	t.Helper()
	if testing.Short() {
		t.Skip("encodes video with ffmpeg")
	}
	kr := testKeyring(t, testKeySpec)
	e, err := NewEmbedder(kr.Current)
	if err != nil {
		t.Fatal(err)
	}
	return kr, e
}

func sharedClip(t testing.TB, name string) string {
	t.Helper()
	testenv.RequireFFmpeg(t)
	return testenv.SharedVideo(t, name)
}

// TestRobustCRF28Downscale marks real and lesson-like clips, encodes them
// with libx264 at CRF 28, and detects from the re-decoded video downscaled
// to 640x360, and under the combined attack (crop to 90%, 640x360,
// brightness and contrast, flip on top; brightening a white slide into
// clipping erases any additive mark there, so this test darkens). An
// unmarked clip and a wrong key give not found.
func TestRobustCRF28Downscale(t *testing.T) {
	kr, e := videoTest(t)
	const p = Payload(0xfeedface01234567)
	clips := map[string]string{
		"bunny": sharedClip(t, "Big_Buck_Bunny_1080_10s_2MB.mp4"),
		"slide": slideClip(t, 1280, 720, 4),
		"dark":  darkClip(t, 1280, 720, 4),
		// 1080p: the block grid's 32 px cells, at the far end of the zoom range.
		"slide1080": slideClip(t, 1920, 1080, 4),
	}
	for name, path := range clips {
		t.Run(name, func(t *testing.T) {
			vf := "scale=1280:720"
			if name == "slide1080" {
				vf = ""
			}
			raw := decodeRaw(t, path, vf, 32)
			plain := encode(t, raw, "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "28")
			grid := markClip(t, e, raw, p)
			if want := map[string]Grid{"bunny": GridFine, "slide": GridBlock, "dark": GridBlock, "slide1080": GridBlock}[name]; grid != want {
				t.Errorf("grid %s, want %s", grid, want)
			}
			marked := encode(t, raw, "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "28")
			for _, attack := range []string{
				"scale=640:360",
				"crop=iw*0.9:ih*0.9,scale=640:360,eq=brightness=-0.06:contrast=1.15,hflip",
			} {
				r := detectClip(t, kr, decodeRaw(t, marked, attack, 0), 0, 32)
				if !r.Found || r.Payload != p {
					t.Errorf("%s: got %+v, want %v", attack, r, p)
				}
				t.Logf("%s: confidence %.2f sync %.1f %s", attack, r.Confidence, r.SyncScore, r.Transform)
			}
			if r := detectClip(t, kr, decodeRaw(t, plain, "scale=640:360", 0), 0, 32); r.Found {
				t.Errorf("unmarked clip: found %+v", r)
			}
			wrong := testKeyring(t, "k1:ffeeddccbbaa99887766554433221100")
			if r := detectClip(t, wrong, decodeRaw(t, marked, "scale=640:360", 0), 0, 32); r.Found {
				t.Errorf("wrong key: found %+v", r)
			}
		})
	}
}

// A non-uniform resize (16:9 squeezed to 4:3, a one-sided crop stretched
// back) is found by the aspect stage only: the uniform search misses it.
func TestAspectSearch(t *testing.T) {
	kr, e := videoTest(t)
	const p = Payload(0x0badc0ffee123456)
	raw := decodeRaw(t, sharedClip(t, "Big_Buck_Bunny_1080_10s_2MB.mp4"), "scale=1280:720", 32)
	markClip(t, e, raw, p)
	marked := encode(t, raw, "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23")
	for _, attack := range []string{
		"scale=960:720",                      // 16:9 squeezed to 4:3: rows zoomed 1.33x the columns
		"scale=640:480",                      // the same at 480p
		"crop=iw*0.85:ih,scale=1280:720",     // a crop of the width only, stretched back
		"scale=1280:600,crop=1152:600,hflip", // squashed, cropped and flipped
	} {
		a := decodeRaw(t, marked, attack, 0)
		uniformOnly := detectClip(t, kr, a, 0, 32)
		d := NewDetector(kr)
		d.SearchAspect()
		for i := range a.frames {
			if err := d.Add(a.luma(i)); err != nil {
				t.Fatal(err)
			}
		}
		r := d.Result()
		if !r.Found || r.Payload != p {
			t.Errorf("%s: got %+v, want %v", attack, r, p)
		}
		if uniformOnly.Found {
			t.Errorf("%s: the uniform search alone found it (%s): not a test of the aspect stage", attack, uniformOnly.Transform)
		}
		t.Logf("%s: confidence %.2f sync %.1f %s", attack, r.Confidence, r.SyncScore, r.Transform)
	}
	// Unmarked frames stay not found through both stages.
	d := NewDetector(kr)
	d.SearchAspect()
	d.Add(naturalFrame(960, 720, 3))
	if r := d.Result(); r.Found {
		t.Errorf("unmarked frame: found %+v", r)
	}
}

// TestSmallBusyFrames: Big Buck Bunny's grass and leaves at 640x360 put
// the true coarse sync peak (4.7-5.6) where unmarked content peaks, yet
// the refined bits of a tracing-length sample (10 s at 12 fps) decode.
// Every candidate is decoded, so the CRF 23 rendition is traced; an
// unmarked clip is not.
func TestSmallBusyFrames(t *testing.T) {
	kr, e := videoTest(t)
	const p = Payload(0x5eed5eed00c0ffee)
	raw := decodeRaw(t, sharedClip(t, "Big_Buck_Bunny_1080_10s_2MB.mp4"), "fps=12,scale=640:360", 0)
	plain := encode(t, raw, "12", x264Args("23")...)
	markVideo(t, e, raw, p, GridFine)
	marked := encode(t, raw, "12", x264Args("23")...)
	r := detectClip(t, kr, decodeRaw(t, marked, "", 0), 0, len(raw.frames))
	if !r.Found || r.Payload != p {
		t.Errorf("640x360 CRF 23 rendition, %d frames: got %+v, want %v", len(raw.frames), r, p)
	}
	t.Logf("%d frames: confidence %.2f, sync %.1f", r.Frames, r.Confidence, r.SyncScore)
	if r := detectClip(t, kr, decodeRaw(t, plain, "", 0), 0, len(raw.frames)); r.Found {
		t.Errorf("unmarked clip: found %+v", r)
	}
}
