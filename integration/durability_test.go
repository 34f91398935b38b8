package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/devserver"
	"github.com/lessonflow/lessonflow/internal/testenv"
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
