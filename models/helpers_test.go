package models

import (
	"image"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/disintegration/imaging"
	"github.com/lessonflow/lessonflow/internal/testenv"
)

// photoNames are the shared safe test photos; rocket.jpg decodes to
// *image.YCbCr, the PNGs to *image.RGBA.
var photoNames = []string{"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"}

// initTestORT initialises ONNX Runtime for this test binary. Init is idempotent
// for one path, so every test may call it.
func initTestORT(t testing.TB) {
	t.Helper()
	if err := Init(testenv.ORTLib(t)); err != nil {
		t.Fatalf("Init: %v", err)
	}
}

func mustManifest(t testing.TB, id string) Manifest {
	t.Helper()
	m, err := LoadManifest(id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newTestClassifier(t testing.TB, opts Options) *Classifier {
	t.Helper()
	initTestORT(t)
	c, err := NewClassifier(mustManifest(t, NSFWModelID), testenv.ModelsDir(t), opts)
	if err != nil {
		t.Fatalf("NewClassifier: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func newTestEmbedder(t testing.TB, id string) *Embedder {
	t.Helper()
	initTestORT(t)
	e, err := NewEmbedder(mustManifest(t, id), testenv.ModelsDir(t), Options{})
	if err != nil {
		t.Fatalf("NewEmbedder: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func loadPhoto(t testing.TB, name string) image.Image {
	t.Helper()
	img, err := imaging.Open(filepath.Join(testenv.SharedTestdata(t), "photos", name))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func loadPhotos(t testing.TB) []image.Image {
	t.Helper()
	imgs := make([]image.Image, len(photoNames))
	for i, n := range photoNames {
		imgs[i] = loadPhoto(t, n)
	}
	return imgs
}

// testsrc2Frame renders ffmpeg's testsrc2 pattern, the synthetic frame the
// pipeline tests use, as a PNG.
func testsrc2Frame(t testing.TB) image.Image {
	t.Helper()
	testenv.RequireFFmpeg(t)
	out := filepath.Join(t.TempDir(), "testsrc2.png")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=640x360", "-frames:v", "1", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg testsrc2: %v\n%s", err, b)
	}
	img, err := imaging.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func dot(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
