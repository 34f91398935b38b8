package leak

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/internal/testenv/wmclip"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

func keyring(t *testing.T, s string) watermark.Keyring {
	t.Helper()
	kr, err := watermark.ParseKeyring(s)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// marked renders a short slide-like clip (flat, near-white: the hard case)
// marked with p, re-encoded at CRF 28.
func marked(t *testing.T, kr watermark.Keyring, p watermark.Payload) string {
	t.Helper()
	src := testenv.Clip(t, "leak-slide-640x360-3s.mp4", "-f", "lavfi", "-i",
		"color=c=0xF4F4F0:size=640x360:rate=25:duration=3,drawbox=x=60:y=60:w=400:h=24:color=0x303030:t=fill",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	path, grid := wmclip.Mark(t, src, kr, p, 28)
	if grid != watermark.GridBlock { // 16 px cells: a tile 512 px tall, 70% seen
		t.Fatalf("grid %s, want block", grid)
	}
	return path
}

// TestDetectBlockGridSlide: a 720p slide is marked on the block grid (the
// pipeline's choice for flat content: 32 px cells, 70% of a tile seen);
// the copy, a 640x360 re-encode and a 4:3 squeeze are traced, the unmarked
// slide is not.
func TestDetectBlockGridSlide(t *testing.T) {
	ctx := context.Background()
	kr := keyring(t, "k1:"+strings.Repeat("cd", 16))
	src := testenv.Clip(t, "leak-slide-1280x720-3s.mp4", "-f", "lavfi", "-i",
		"color=c=0xF4F4F0:size=1280x720:rate=25:duration=3,drawbox=x=120:y=120:w=800:h=40:color=0x303030:t=fill",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	const p = watermark.Payload(0x0badc0ffee123456)
	path, grid := wmclip.Mark(t, src, kr, p, 28)
	if grid != watermark.GridBlock {
		t.Fatalf("grid %s, want block", grid)
	}
	small := filepath.Join(t.TempDir(), "small.mp4")
	squeezed := filepath.Join(t.TempDir(), "squeezed.mp4")
	for out, vf := range map[string]string{small: "scale=640:360", squeezed: "scale=480:360"} {
		if b, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-vf", vf, "-c:v", "libx264",
			"-preset", "veryfast", "-crf", "28", out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", vf, err, b)
		}
	}
	for _, f := range []string{path, small, squeezed} {
		if rep, err := Detect(ctx, kr, f, Options{}); err != nil || !rep.Found || rep.Payload != p.String() {
			t.Errorf("%s: %+v %v", filepath.Base(f), rep, err)
		} else {
			t.Logf("%s: %s", filepath.Base(f), rep.Transform)
		}
	}
	if rep, err := Detect(ctx, kr, src, Options{}); err != nil || rep.Found {
		t.Fatalf("unmarked: %+v %v", rep, err)
	}
}

func TestDetectAndLookup(t *testing.T) {
	ctx := context.Background()
	kr := keyring(t, "k2:"+strings.Repeat("ab", 16)+",k1:"+strings.Repeat("cd", 16))
	cat, err := catalog.OpenSQLite(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: "v1", Title: "Slides", Tags: []string{}, TeacherID: "t9"}); err != nil {
		t.Fatal(err)
	}
	rec, err := cat.RegisterWatermark(ctx, "v1", "t9", "k2")
	if err != nil {
		t.Fatal(err)
	}
	path := marked(t, kr, watermark.Payload(rec.ID))
	rep, err := Detect(ctx, kr, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Found || rep.Payload != rec.ID.String() || rep.KeyID != "k2" || rep.Media != "video" || rep.Frames != 36 {
		t.Fatalf("report %+v (want 3 s at 12 fps = 36 frames)", rep)
	}
	if err := Lookup(ctx, cat, &rep); err != nil || rep.Video == nil || rep.Video.ID != "v1" || rep.Video.TeacherID != "t9" {
		t.Fatalf("lookup: %+v %v", rep.Video, err)
	}

	// Only the old key in the ring: still read (rotation keeps old marks traceable).
	old := keyring(t, "k1:"+strings.Repeat("cd", 16)+",k2:"+strings.Repeat("ab", 16))
	if rep, err := Detect(ctx, old, path, Options{}); err != nil || !rep.Found || rep.KeyID != "k2" {
		t.Fatalf("rotated keyring: %+v %v", rep, err)
	}
	// A wrong key finds nothing, and neither does unmarked content.
	if rep, err := Detect(ctx, keyring(t, "x:"+strings.Repeat("ef", 16)), path, Options{}); err != nil || rep.Found || rep.Payload != "" {
		t.Fatalf("wrong key: %+v %v", rep, err)
	}
	unmarked := testenv.Clip(t, "leak-slide-640x360-3s.mp4")
	if rep, err := Detect(ctx, kr, unmarked, Options{}); err != nil || rep.Found {
		t.Fatalf("unmarked: %+v %v", rep, err)
	}
	// A copy squeezed to 4:3 (a non-uniform resize) is still traced.
	squeezed := filepath.Join(t.TempDir(), "squeezed.mp4")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-vf", "scale=480:360", "-c:v", "libx264",
		"-preset", "veryfast", "-crf", "23", squeezed).CombinedOutput(); err != nil {
		t.Fatalf("squeeze: %v: %s", err, out)
	}
	if rep, err := Detect(ctx, kr, squeezed, Options{}); err != nil || !rep.Found || rep.Payload != rec.ID.String() ||
		!strings.Contains(rep.Transform, "aspect") {
		t.Fatalf("squeezed to 4:3: %+v %v", rep, err)
	}
	// Bounded: MaxSeconds and MaxFPS cap the frames looked at.
	if rep, err := Detect(ctx, kr, path, Options{MaxSeconds: 1, MaxFPS: 5}); err != nil || rep.Frames != 5 {
		t.Fatalf("bounded: %d frames, %v", rep.Frames, err)
	}
}

func TestDetectRejectsNonMedia(t *testing.T) {
	kr := keyring(t, "k:"+strings.Repeat("ab", 16))
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		"notes.txt": []byte("not a video"),
		"empty.mp4": {},
		"tiny.png":  nil, // written below: an image too small to detect in
	} {
		p := filepath.Join(dir, name)
		if b != nil {
			os.WriteFile(p, b, 0o644)
		}
		if name == "tiny.png" {
			p = testenv.Clip(t, "leak-tiny-8x8.png", "-f", "lavfi", "-i", "color=c=white:size=8x8", "-frames:v", "1")
		}
		if _, err := Detect(context.Background(), kr, p, Options{}); !media.IsInvalid(err) {
			t.Errorf("%s: %v, want an InvalidError", name, err)
		}
	}
}
