package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/devserver"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/workflows"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// lessonflowBinary builds cmd/lessonflow once per test binary.
func lessonflowBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lessonflow-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "lessonflow")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/lessonflow")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("build lessonflow: %v\n%s", binErr, binPath)
	}
	return binPath
}

// startWorkerProcess runs `lessonflow worker` against the stack's data and
// queue; env entries ("KEY=value") override the defaults.
func (s *stack) startWorkerProcess(t *testing.T, n int, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(lessonflowBinary(t), "worker")
	cmd.Env = append(os.Environ(),
		"LESSONFLOW_DATA_DIR="+s.dataDir,
		"LESSONFLOW_TOOLS_DIR="+testenv.ToolsDir(),
		"TEMPORAL_ADDRESS="+s.server.Address,
		"LESSONFLOW_TASK_QUEUE="+s.taskQueue,
		"TEMPORAL_NAMESPACE="+s.namespace,
		"LESSONFLOW_METRICS_ADDR=127.0.0.1:0",
		"LESSONFLOW_WORKER_CONCURRENCY=1",
		"LESSONFLOW_WATERMARK_KEY="+itWatermarkKey, "LESSONFLOW_WATERMARK_PRESET="+itEncode.Preset,
	)
	cmd.Env = append(cmd.Env, s.workerEnv...)
	cmd.Env = append(cmd.Env, env...) // the last value of a key wins
	logf, err := os.Create(filepath.Join(t.TempDir(), "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("worker %d log:\n%s", n, b)
		}
	})
	return cmd
}

// waitStageRunning polls the catalog until a stage of the video is running.
func (s *stack) waitStageRunning(t *testing.T, id, stage string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		v, err := s.catalog.GetVideo(context.Background(), id)
		if err == nil {
			for _, st := range v.Stages {
				if st.Name == stage && st.State == "running" {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("stage %s of %s never ran within %s", stage, id, timeout)
}

// longClip is 40 minutes of small video: sampling decodes for seconds and the
// coarse pass hits the 600-frame cap, so classification lasts too.
func longClip(t *testing.T) string {
	return testenv.Clip(t, "durability-40min.mp4", "-f", "lavfi", "-i", "testsrc2=size=256x144:rate=4:duration=2400",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "40", "-pix_fmt", "yuv420p")
}

// killWorkerDuring starts worker n, waits until the stage runs, and SIGKILLs it.
func (s *stack) killWorkerDuring(t *testing.T, id, stage string, n int) {
	t.Helper()
	w := s.startWorkerProcess(t, n)
	s.waitStageRunning(t, id, stage, 3*time.Minute)
	time.Sleep(300 * time.Millisecond)
	if err := w.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w.Wait()
	t.Logf("worker %d killed during %s", n, stage)
}

// TestWorkerKilledMidStage: SIGKILL the worker process during sampling and
// again during classification; after restarts the video completes with
// exactly one decision record.
func TestWorkerKilledMidStage(t *testing.T) {
	if testing.Short() {
		t.Skip("kills worker processes; not in -short")
	}
	t.Run("sqlite+files", func(t *testing.T) { testWorkerKilledMidStage(t, stackOptions{noWorker: true}) })
	// The catalog in Postgres, the objects in S3: what several machines run.
	t.Run("postgres+s3", func(t *testing.T) {
		testWorkerKilledMidStage(t, stackOptions{noWorker: true, postgres: true, s3: true})
	})
}

func testWorkerKilledMidStage(t *testing.T, o stackOptions) {
	s := newStack(t, o)
	clip := longClip(t)
	code, body := s.upload(appKey, lessonForm(clip))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	id := body["id"].(string)

	s.killWorkerDuring(t, id, "sample", 1)
	s.killWorkerDuring(t, id, "classify", 2)
	s.startWorkerProcess(t, 3)
	v := s.waitState(id, 5*time.Minute)
	if v["state"] != "published" {
		t.Fatalf("state %v: %v", v["state"], v["error"])
	}
	ds, err := s.catalog.Decisions(context.Background(), id)
	if err != nil || len(ds) != 1 {
		t.Fatalf("want exactly one decision record, have %d (%v)", len(ds), err)
	}
	video, _ := s.catalog.GetVideo(context.Background(), id)
	if ups := s.blobKeys("uploads/"); len(ups) != 1 || ups[0] != video.BlobKey {
		t.Fatalf("upload objects %v, want exactly the video's %s", ups, video.BlobKey)
	}
	for _, st := range video.Stages {
		t.Logf("stage %s: %s, %d attempts", st.Name, st.State, st.Attempts)
		if (st.Name == "sample" || st.Name == "classify") && st.Attempts < 2 {
			t.Errorf("stage %s ran %d times; the kill should have forced a retry", st.Name, st.Attempts)
		}
	}
}

// TestTemporalServerKilledMidPipeline: SIGKILL the Temporal server (persisted
// in SQLite) while a video is being classified, and restart it. The video
// completes with one decision; an upload while the server is down answers
// 503 and leaves nothing behind, and its retry goes through.
func TestTemporalServerKilledMidPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the Temporal server; not in -short")
	}
	srv, opts := startPersistedServer(t)
	s := newStack(t, stackOptions{server: srv, namespace: "default", noWorker: true})
	s.startWorkerProcess(t, 1)
	clip := longClip(t)
	code, body := s.upload(appKey, lessonForm(clip))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	id := body["id"].(string)
	s.waitStageRunning(t, id, "classify", 3*time.Minute)
	srv.Kill()
	t.Log("Temporal server killed during classification")

	second := testenv.Clip(t, "durability-second.mp4", "-f", "lavfi", "-i", "smptebars=size=320x240:rate=5:duration=4", "-c:v", "libx264", "-pix_fmt", "yuv420p")
	if code, body := s.upload(appKey, lessonForm(second)); code != http.StatusServiceUnavailable {
		t.Fatalf("upload with Temporal down: %d %v, want 503", code, body)
	}
	if keys := s.blobKeys("uploads/"); len(keys) != 1 {
		t.Fatalf("the failed upload left a blob: %v", keys)
	}

	restartServer(t, srv, opts)
	// The client retries on 503, as the answer says: the API's connection
	// comes back after gRPC's reconnect backoff, and until then every
	// refused upload must leave nothing behind.
	deadline := time.Now().Add(time.Minute)
	for attempt := 1; ; attempt++ {
		code, body = s.upload(appKey, lessonForm(second))
		if code == http.StatusAccepted {
			t.Logf("upload accepted at attempt %d after the restart", attempt)
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("retried upload: %d %v", code, body)
		}
		if keys := s.blobKeys("uploads/"); len(keys) != 1 {
			t.Fatalf("a refused upload left a blob: %v", keys)
		}
		time.Sleep(time.Second)
	}
	for _, vid := range []string{id, body["id"].(string)} {
		v := s.waitState(vid, 6*time.Minute)
		if v["state"] != "published" {
			t.Fatalf("%s: state %v: %v", vid, v["state"], v["error"])
		}
		ds, err := s.catalog.Decisions(context.Background(), vid)
		if err != nil || len(ds) != 1 {
			t.Fatalf("%s: want exactly one decision record, have %d (%v)", vid, len(ds), err)
		}
	}
}

// startPersistedServer starts a Temporal dev server of the test's own,
// persisted in SQLite so that it can be killed and restarted.
func startPersistedServer(t *testing.T) (*devserver.Server, devserver.Options) {
	t.Helper()
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "temporal.log"))
	if err != nil {
		t.Fatal(err)
	}
	opts := devserver.Options{CLI: testenv.TemporalCLI(t), DBFile: filepath.Join(dir, "temporal.db"), Log: logf}
	srv, err := devserver.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	return srv, opts
}

// restartServer starts a killed server again on its database and port.
func restartServer(t *testing.T, killed *devserver.Server, opts devserver.Options) {
	t.Helper()
	opts.Port = portOf(t, killed.Address)
	srv, err := devserver.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	t.Log("Temporal server restarted on the same database")
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TestAdminRetryFailedVideo: a worker without a watermark key fails the
// watermark stage of an approved video (state failed, a clear reason).
// Once a worker with the key runs, an admin retries the video: the
// pipeline runs again and publishes it with still exactly one decision.
// Only admins may retry, and only failed videos.
func TestAdminRetryFailedVideo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs worker processes; not in -short")
	}
	s := newStack(t, stackOptions{noWorker: true})
	w1 := s.startWorkerProcess(t, 1, "LESSONFLOW_WATERMARK_KEY=")
	id := uploadClip(s, "car-detection.mp4")
	v := s.waitState(id, 3*time.Minute)
	if v["state"] != "failed" || !strings.Contains(fmt.Sprint(v["error"]), "watermark") {
		t.Fatalf("without a key: %v %v, want failed at the watermark stage", v["state"], v["error"])
	}
	retry := "/v1/admin/videos/" + id + "/retry"
	if code, body := s.post(reviewerKey, retry, nil); code != http.StatusForbidden {
		t.Fatalf("retry as reviewer: %d %v", code, body)
	}
	if code, body := s.post(adminKey, "/v1/admin/videos/v-none/retry", nil); code != http.StatusNotFound {
		t.Fatalf("retry of an unknown video: %d %v", code, body)
	}
	_ = w1.Process.Kill()
	_ = w1.Wait()
	s.startWorkerProcess(t, 2) // with the key
	code, body := s.post(adminKey, retry, nil)
	if code != http.StatusAccepted || body["state"] != "processing" {
		t.Fatalf("retry: %d %v", code, body)
	}
	v = s.waitState(id, 3*time.Minute)
	if v["state"] != "published" {
		t.Fatalf("after the retry: %v %v", v["state"], v["error"])
	}
	ctx := context.Background()
	if ds, err := s.catalog.Decisions(ctx, id); err != nil || len(ds) != 1 {
		t.Fatalf("decision log after the retry: %+v %v, want the one decision", ds, err)
	}
	if _, err := s.catalog.Rendition(ctx, id); err != nil {
		t.Fatalf("rendition after the retry: %v", err)
	}
	if code, body := s.post(adminKey, retry, nil); code != http.StatusConflict || errorCode(body) != "not_failed" {
		t.Fatalf("retry of a published video: %d %v", code, body)
	}
}

// TestWorkerKilledAfterSamplingCheckpoint: SIGKILL the worker once a
// checkpoint of the coarse sampling has reached the Temporal server (in the
// activity's heartbeat). The next worker resumes after the checkpointed
// frames: it neither decodes nor stores them again, and the video ends with
// exactly the frames an uninterrupted run picks, one decision, and no
// checkpoint objects left.
func TestWorkerKilledAfterSamplingCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("kills worker processes; not in -short")
	}
	// The policy flags a harmless label (testsrc2 reads as a drawing), so
	// the run ends at the decision instead of watermarking 20 minutes; with
	// no dense re-scan, which would sample and classify for another minute.
	src, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "moderation", "policies", "test-block-drawing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "block-drawing-no-rescan.yaml")
	noRescan := regexp.MustCompile(`(?m)^(\s*rescan:) [0-9.]+$`).ReplaceAll(src, []byte("$1 0"))
	if err := os.WriteFile(policyFile, noRescan, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{noWorker: true})
	ctx := context.Background()
	// 20 minutes at 640x360 (the 5-minute durability clip four times,
	// stream-copied): the coarse pass decodes for about half a minute, past
	// the first checkpoint (10 s) and its heartbeat (sent every 16 s).
	clip := testenv.Clip(t, "sample-resume-640x360-1200s.mp4", "-stream_loop", "3", "-i", fiveMinuteClip(t), "-c", "copy")

	// What an uninterrupted run picks, computed beside the pipeline.
	policy, err := moderation.LoadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range policy.Signals {
		if sig.Rescan != 0 {
			t.Fatalf("signal %s still re-scans at %v", sig.Name, sig.Rescan)
		}
	}
	type pick struct {
		PTSMS int64
		Scene bool
		Sum   string
	}
	type picked struct {
		picks []pick
		err   error
	}
	want := make(chan picked, 2)
	sctx, stop := context.WithCancel(ctx)
	t.Cleanup(func() { stop(); <-want })
	go func() {
		var r picked
		info, err := media.Probe(sctx, clip, media.DefaultLimits)
		if err == nil {
			err = media.SampleFrames(sctx, clip, info, policy.Sampling, func(f media.Frame) error {
				h := sha256.Sum256(f.JPEG)
				r.picks = append(r.picks, pick{f.PTSMS, f.Scene, hex.EncodeToString(h[:])})
				return nil
			})
		}
		r.err = err
		want <- r
		want <- r // one for the comparison, one for the cleanup
	}()

	code, body := s.upload(appKey, lessonForm(clip))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	id := body["id"].(string)
	w := s.startWorkerProcess(t, 1, "LESSONFLOW_POLICY="+policyFile)
	s.waitStageRunning(t, id, activities.StageSample, 3*time.Minute)

	// Wait for a checkpoint in the pending activity's heartbeat.
	var cp struct {
		Resume media.SampleResume `json:"resume"`
		Key    string             `json:"key"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	for cp.Key == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no sampling checkpoint reached the server: %s", s.describePipeline(id))
		}
		time.Sleep(100 * time.Millisecond)
		d, err := s.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(id), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range d.GetPendingActivities() {
			if a.GetActivityType().GetName() == "SampleFrames" && a.GetHeartbeatDetails() != nil {
				_ = converter.GetDefaultDataConverter().FromPayloads(a.GetHeartbeatDetails(), &cp)
			}
		}
	}
	if err := w.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w.Wait()
	killed := time.Now()
	if st := sampleStage(t, s, id); st.State != "running" {
		t.Fatalf("sampling had finished before the kill (%+v): the clip is too short", st)
	}
	t.Logf("worker killed during sampling; the server held a checkpoint after %d frames (%d ms)", cp.Resume.Next, cp.Resume.LastPTSMS)

	s.startWorkerProcess(t, 2, "LESSONFLOW_POLICY="+policyFile)
	v := s.waitState(id, 5*time.Minute)
	// Coarse frames alone put testsrc2 up for review under this policy.
	if v["state"] != "needs_review" && v["state"] != "blocked" {
		t.Fatalf("state %v, want a decision of the drawing policy: %v", v["state"], v["error"])
	}
	if vd, err := s.catalog.GetVideo(ctx, id); err == nil {
		for _, st := range vd.Stages {
			if st.StartedAt != nil && st.FinishedAt != nil {
				t.Logf("stage %s: %s in %s, %d attempts", st.Name, st.State, st.FinishedAt.Sub(*st.StartedAt).Round(time.Second), st.Attempts)
			}
		}
	}
	if st := sampleStage(t, s, id); st.Attempts < 2 {
		t.Fatalf("sample stage %+v: the kill should have forced a retry", st)
	}
	if ds, err := s.catalog.Decisions(ctx, id); err != nil || len(ds) != 1 {
		t.Fatalf("want exactly one decision record, have %d (%v)", len(ds), err)
	}
	if left := s.blobKeys("frames/" + id + "/coarse.resume/"); len(left) != 0 {
		t.Errorf("checkpoints left: %v", left)
	}

	// The stored manifest, frame by frame: the checkpointed frames were
	// written before the kill and never again; the rest after it.
	var m struct {
		Frames []struct {
			Index  int    `json:"index"`
			PTSMS  int64  `json:"pts_ms"`
			Scene  bool   `json:"scene"`
			Key    string `json:"key"`
			SHA256 string `json:"sha256"`
		} `json:"frames"`
	}
	raw, err := blob.GetBytes(ctx, s.blobs, "frames/"+id+"/coarse.json", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if n := len(s.blobKeys("frames/" + id + "/coarse/")); n != len(m.Frames) {
		t.Errorf("%d frame objects for %d frames in the manifest", n, len(m.Frames))
	}
	fs := s.blobs.(*blob.FS)
	for i, f := range m.Frames {
		p, err := fs.LocalPath(f.Key)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if before := st.ModTime().Before(killed); before != (i < cp.Resume.Next) {
			t.Fatalf("frame %d (checkpoint after %d) written at %s, the kill at %s: the retry did not resume at the checkpoint",
				i, cp.Resume.Next, st.ModTime().Format(time.StampMicro), killed.Format(time.StampMicro))
		}
	}
	r := <-want
	if r.err != nil {
		t.Fatalf("uninterrupted sampling: %v", r.err)
	}
	picks := r.picks
	if len(picks) != len(m.Frames) {
		t.Fatalf("resumed run stored %d frames, an uninterrupted run picks %d", len(m.Frames), len(picks))
	}
	for i, p := range picks {
		f := m.Frames[i]
		if f.Index != i || f.PTSMS != p.PTSMS || f.Scene != p.Scene || f.SHA256 != p.Sum {
			t.Fatalf("frame %d: stored %+v, an uninterrupted run picks %+v", i, f, p)
		}
	}
	t.Logf("%d frames, %d from before the kill, identical to an uninterrupted run", len(picks), cp.Resume.Next)
}

func sampleStage(t *testing.T, s *stack, id string) catalog.Stage {
	t.Helper()
	v, err := s.catalog.GetVideo(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range v.Stages {
		if st.Name == activities.StageSample {
			return st
		}
	}
	t.Fatalf("video %s has no %s stage", id, activities.StageSample)
	return catalog.Stage{}
}
