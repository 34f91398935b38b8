package workflows_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
	"github.com/lessonflow/lessonflow/worker"
	"github.com/lessonflow/lessonflow/workflows"
)

// withWatermark gives test activities a watermark key and a fast encode.
func withWatermark(t *testing.T, a *activities.Activities) *activities.Activities {
	t.Helper()
	kr, err := watermark.ParseKeyring("wf1:" + strings.Repeat("3c", 16))
	if err != nil {
		t.Fatal(err)
	}
	a.WatermarkKeys, a.Encode = &kr, media.EncodeOptions{CRF: 23, Preset: "ultrafast"}
	return a
}

// TestVideoWatermarkStage: an approved video gets its registry record and
// rendition; without a key the stage fails at once (not retried) and the
// video ends failed with the reason.
func TestVideoWatermarkStage(t *testing.T) {
	clip := testenv.Clip(t, "wf-slides.mp4", "-f", "lavfi", "-i",
		"color=c=white:s=640x360:r=10:d=8,drawbox=x=40:y=40:w=560:h=60:color=navy:t=fill,drawbox=x=40:y=140:w=300:h=20:color=gray:t=fill",
		"-c:v", "libx264", "-pix_fmt", "yuv420p")
	acts := deps(t, "default")
	_, in := run(t, acts, clip)
	reg := acts.Catalog.(catalog.Registry)
	rec, err := reg.WatermarkOf(context.Background(), in.VideoID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := reg.Rendition(context.Background(), in.VideoID)
	if err != nil || r.Payload != rec.ID || r.Frames != 80 || r.BlobKey != activities.RenditionKey(in.VideoID) {
		t.Fatalf("rendition %+v, %v; want 80 frames marked with %s", r, err, rec.ID)
	}

	acts = deps(t, "default")
	acts.WatermarkKeys = nil
	_, in, err = runToEnd(t, acts, clip)
	v, _ := acts.Catalog.GetVideo(context.Background(), in.VideoID)
	if err == nil || !strings.Contains(err.Error(), "watermark failed") || v.State != catalog.StateFailed || !strings.Contains(v.Error, "LESSONFLOW_WATERMARK_KEY") {
		t.Fatalf("without a key: %v, video %s %q", err, v.State, v.Error)
	}
	for _, st := range v.Stages {
		if st.Name == activities.StageWatermark && st.Attempts != 1 {
			t.Fatalf("watermark stage ran %d times; a missing key is not retried", st.Attempts)
		}
	}
}

// runToEnd uploads a file into the deps' stores and runs the workflow to
// its end, successful or not.
func runToEnd(t *testing.T, acts *activities.Activities, path string) (workflows.VideoResult, workflows.VideoInput, error) {
	t.Helper()
	ctx := context.Background()
	info, err := acts.Blobs.Put(ctx, "uploads/test", testenv.Open(t, path))
	if err != nil {
		t.Fatal(err)
	}
	in := workflows.VideoInput{VideoID: "v" + info.SHA256[:24], BlobKey: info.Key, SHA256: info.SHA256}
	if _, _, err := acts.Catalog.CreateVideo(ctx, catalog.Video{ID: in.VideoID, SHA256: in.SHA256, Title: "t", Level: 1,
		Language: "en", TeacherID: "t1", BlobKey: in.BlobKey, SizeBytes: info.Size}); err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	// Real activities (ffmpeg, ONNX, the watermark pass) run here: the
	// default 3 s without progress panics when go test ./... loads the box.
	env.SetTestTimeout(5 * time.Minute)
	worker.Register(env, acts)
	env.ExecuteWorkflow(worker.WorkflowName, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var res workflows.VideoResult
	return res, in, env.GetWorkflowResult(&res)
}
