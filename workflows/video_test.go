package workflows_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/models"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/workflows"
)

var (
	clfOnce sync.Once
	clf     *models.Classifier
	emb     *models.Embedder
	clfErr  error
)

// deps are real: SQLite catalog, file blobs, ffmpeg, ONNX Runtime and the model.
func deps(t *testing.T, policyName string) *activities.Activities {
	t.Helper()
	clfOnce.Do(func() {
		if clfErr = models.Init(testenv.ORTLib(t)); clfErr != nil {
			return
		}
		m, err := models.LoadManifest(models.NSFWModelID)
		if err != nil {
			clfErr = err
			return
		}
		if clf, clfErr = models.NewClassifier(m, testenv.ModelsDir(t), models.Options{}); clfErr != nil {
			return
		}
		if m, clfErr = models.LoadManifest(models.EmbedderModelID); clfErr != nil {
			return
		}
		emb, clfErr = models.NewEmbedder(m, testenv.ModelsDir(t), models.Options{})
	})
	if clfErr != nil {
		t.Fatal(clfErr)
	}
	policy, err := moderation.LoadPolicy(policyName)
	if err != nil {
		t.Fatal(err)
	}
	cat, blobs, vecs := testStores(t, emb.ModelID(), emb.Dim())
	return withWatermark(t, &activities.Activities{Catalog: cat, Blobs: blobs, Classifier: clf, Embedder: emb, Vectors: vecs,
		Policy: policy, Limits: media.DefaultLimits, TempDir: t.TempDir()})
}

// run uploads a file into the deps' stores and runs the workflow to a
// successful end.
func run(t *testing.T, acts *activities.Activities, path string) (workflows.VideoResult, workflows.VideoInput) {
	t.Helper()
	res, in, err := runToEnd(t, acts, path)
	if err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	return res, in
}

func TestVideoApprovedSlides(t *testing.T) {
	acts := deps(t, "default")
	clip := testenv.Clip(t, "wf-slides.mp4", "-f", "lavfi", "-i",
		"color=c=white:s=640x360:r=10:d=8,drawbox=x=40:y=40:w=560:h=60:color=navy:t=fill,drawbox=x=40:y=140:w=300:h=20:color=gray:t=fill",
		"-c:v", "libx264", "-pix_fmt", "yuv420p")
	res, in := run(t, acts, clip)
	if res.State != string(catalog.StatePublished) {
		t.Fatalf("slides: %+v", res)
	}
	v, err := acts.Catalog.GetVideo(context.Background(), in.VideoID)
	if err != nil || v.State != catalog.StatePublished || v.Media == nil || v.Media.Width != 640 {
		t.Fatalf("catalog: %+v %v", v, err)
	}
	if l, err := acts.Vectors.Get(context.Background(), in.VideoID); err != nil || l.Language != "en" || l.Level != 1 {
		t.Fatalf("published but not indexed: %+v %v", l, err)
	}
	ds, _ := acts.Catalog.Decisions(context.Background(), in.VideoID)
	if len(ds) != 1 || ds[0].PolicyVersion != acts.Policy.Version || ds[0].ModelSHA256 != clf.ModelSHA256() || ds[0].Sampler == nil {
		t.Fatalf("decision log: %+v", ds)
	}
}

func TestVideoBlockedByDrawingPolicy(t *testing.T) {
	acts := deps(t, "test-block-drawing")
	clip := testenv.Clip(t, "wf-testsrc2.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=10:duration=8", "-c:v", "libx264", "-pix_fmt", "yuv420p")
	res, in := run(t, acts, clip)
	if res.State != "blocked" {
		t.Fatalf("testsrc2 under the drawing policy: %+v", res)
	}
	// The dense pass ran: frames at 4 fps were stored beside the coarse ones.
	dense, _ := acts.Blobs.List(context.Background(), "frames/"+in.VideoID+"/dense/")
	if len(dense) < 10 {
		t.Fatalf("dense re-scan stored %d frames", len(dense))
	}
}

func TestVideoRejectedInvalid(t *testing.T) {
	acts := deps(t, "default")
	png := testenv.Clip(t, "wf-image.png", "-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1")
	res, in := run(t, acts, png)
	if res.State != "rejected_invalid" || res.Reason == "" {
		t.Fatalf("png: %+v", res)
	}
	v, _ := acts.Catalog.GetVideo(context.Background(), in.VideoID)
	if v.State != catalog.StateRejectedInvalid || v.Error == "" {
		t.Fatalf("catalog: %+v", v)
	}
	if left, _ := acts.Blobs.List(context.Background(), ""); len(left) != 0 {
		t.Fatalf("rejected upload left blobs: %v", left)
	}
}

// testStores opens the real backends a test's activities use, in its temp
// dirs and closed when it ends: a SQLite catalog, file blobs and a sqlite-vec
// collection for the model's vectors.
func testStores(t *testing.T, model string, dim int) (*catalog.SQLite, *blob.FS, *vectorstore.SQLiteVec) {
	t.Helper()
	cat, err := catalog.OpenSQLite(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	blobs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	vecs, err := vectorstore.OpenSQLiteVec(t.TempDir(), vectorstore.CollectionName(model, dim), dim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vecs.Close() })
	return cat, blobs, vecs
}
