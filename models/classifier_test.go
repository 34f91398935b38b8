package models

import (
	"context"
	"errors"
	"image"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lessonflow/lessonflow/internal/testenv"
)

// Reference top labels and scores from shared/models/MODELS.md, computed with
// align-corners bilinear; a miss beyond the tolerance means preprocessing
// drifted from what the model was validated with.
var nsfwReference = map[string]struct {
	label string
	score float32
}{
	"astronaut.png": {"Neutral", 0.933},
	"chelsea.png":   {"Neutral", 0.931},
	"coffee.png":    {"Neutral", 0.987},
	"rocket.jpg":    {"Drawing", 0.807},
}

const scoreTolerance = 0.03

func TestClassifyReferencePhotos(t *testing.T) {
	c := newTestClassifier(t, Options{})
	if c.ModelID() != NSFWModelID || c.ModelSHA256() != mustManifest(t, NSFWModelID).SHA256 {
		t.Errorf("ModelID/SHA256 = %s/%s", c.ModelID(), c.ModelSHA256())
	}
	labels := c.Labels()
	probs, err := c.Classify(context.Background(), loadPhotos(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range photoNames {
		p := probs[i]
		if len(p) != len(labels) {
			t.Fatalf("%s: %d probabilities for %d labels", name, len(p), len(labels))
		}
		sum := float32(0)
		for _, v := range p {
			sum += v
		}
		if math.Abs(float64(sum-1)) > 1e-4 {
			t.Errorf("%s: probabilities sum to %v", name, sum)
		}
		want := nsfwReference[name]
		top := argmax(p)
		t.Logf("%s: %s %.4f (all %v)", name, labels[top], p[top], p)
		if labels[top] != want.label || math.Abs(float64(p[top]-want.score)) > scoreTolerance {
			t.Errorf("%s: top %s %.4f, want %s %.3f±%.2f", name, labels[top], p[top], want.label, want.score, scoreTolerance)
		}
	}
}

func TestClassifyTestsrc2IsDrawing(t *testing.T) {
	c := newTestClassifier(t, Options{})
	probs, err := c.Classify(context.Background(), []image.Image{testsrc2Frame(t)})
	if err != nil {
		t.Fatal(err)
	}
	p, labels := probs[0], c.Labels()
	top := argmax(p)
	t.Logf("testsrc2: %s %.4f (all %v)", labels[top], p[top], p)
	if labels[top] != "Drawing" || math.Abs(float64(p[top]-0.85)) > scoreTolerance {
		t.Errorf("testsrc2: top %s %.4f, want Drawing 0.85±%.2f", labels[top], p[top], scoreTolerance)
	}
}

func TestClassifyBatchedEqualsUnbatched(t *testing.T) {
	imgs := append(loadPhotos(t), testsrc2Frame(t))
	imgs = append(imgs, imgs...) // 10 images: batches of 8 and 2
	batched, err := newTestClassifier(t, Options{BatchSize: 8}).Classify(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	single, err := newTestClassifier(t, Options{BatchSize: 1}).Classify(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range imgs {
		worst = math.Max(worst, maxAbsDiff(batched[i], single[i]))
	}
	t.Logf("max |batched - unbatched| = %.3g", worst)
	if worst >= 1e-4 {
		t.Errorf("batched and unbatched differ by %v", worst)
	}
}

func TestClassifyConcurrent(t *testing.T) {
	c := newTestClassifier(t, Options{BatchSize: 2})
	imgs := loadPhotos(t)
	want, err := c.Classify(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([][][]float32, 4)
	errs := make([]error, 4)
	for g := range got {
		wg.Go(func() {
			for range 3 {
				if got[g], errs[g] = c.Classify(context.Background(), imgs); errs[g] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for g := range got {
		if errs[g] != nil {
			t.Fatalf("goroutine %d: %v", g, errs[g])
		}
		for i := range imgs {
			if d := maxAbsDiff(got[g][i], want[i]); d != 0 {
				t.Errorf("goroutine %d image %s differs by %v", g, photoNames[i], d)
			}
		}
	}
}

func TestClassifierRejectsTamperedModel(t *testing.T) {
	initTestORT(t)
	m := mustManifest(t, NSFWModelID)
	dir := t.TempDir()
	path := filepath.Join(dir, m.File)
	copyFile(t, filepath.Join(testenv.ModelsDir(t), m.File), path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewClassifier(m, dir, Options{}); !errors.Is(err, ErrSHA256Mismatch) {
		t.Errorf("NewClassifier on a flipped byte: err = %v, want ErrSHA256Mismatch", err)
	}
	if err := Verify(path, m.SHA256); !errors.Is(err, ErrSHA256Mismatch) {
		t.Errorf("Verify on a flipped byte: err = %v", err)
	}
	if _, err := NewClassifier(m, t.TempDir(), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NewClassifier without the file: err = %v", err)
	}
}

func TestClassifierRejectsBadInput(t *testing.T) {
	initTestORT(t)
	if _, err := NewClassifier(mustManifest(t, EmbedderModelID), testenv.ModelsDir(t), Options{}); err == nil {
		t.Error("NewClassifier accepted the embedder manifest")
	}
	if _, err := NewClassifier(mustManifest(t, NSFWModelID), testenv.ModelsDir(t), Options{BatchSize: -1}); err == nil {
		t.Error("NewClassifier accepted a negative batch size")
	}

	c := newTestClassifier(t, Options{BatchSize: 1})
	imgs := loadPhotos(t)
	if res, err := c.Classify(context.Background(), nil); err != nil || len(res) != 0 {
		t.Errorf("Classify(nil) = %v, %v", res, err)
	}
	if _, err := c.Classify(context.Background(), []image.Image{imgs[0], image.NewRGBA(image.Rectangle{})}); err == nil {
		t.Error("Classify accepted an empty image")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Classify(ctx, imgs); !errors.Is(err, context.Canceled) {
		t.Errorf("Classify with a cancelled ctx: err = %v", err)
	}
	if _, err := c.RunPreprocessed(make([]float32, 10), 1); err == nil {
		t.Error("RunPreprocessed accepted a short batch")
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Classify(context.Background(), imgs[:1]); !errors.Is(err, ErrClosed) {
		t.Errorf("Classify after Close: err = %v", err)
	}
}

// TestRunPreprocessedMatchesClassify ties the benchmark's raw path to the
// pipeline: same tensor, same numbers.
func TestRunPreprocessedMatchesClassify(t *testing.T) {
	c := newTestClassifier(t, Options{})
	imgs := loadPhotos(t)
	want, err := c.Classify(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.RunPreprocessed(preprocessBatch(t, imgs), len(imgs))
	if err != nil {
		t.Fatal(err)
	}
	for i := range imgs {
		if d := maxAbsDiff(got[i*5:(i+1)*5], want[i]); d != 0 {
			t.Errorf("%s: RunPreprocessed differs from Classify by %v", photoNames[i], d)
		}
	}
}

func preprocessBatch(t testing.TB, imgs []image.Image) []float32 {
	p := mustManifest(t, NSFWModelID).Preprocessing
	n := p.Width * p.Height * 3
	batch := make([]float32, len(imgs)*n)
	for i, img := range imgs {
		Preprocess(img, p, batch[i*n:(i+1)*n])
	}
	return batch
}
