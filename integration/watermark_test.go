package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
	"github.com/lessonflow/lessonflow/workflows"
)

// itWatermarkKey marks every stack's renditions; itEncode keeps tests quick
// (the benchmark measures the default preset).
const itWatermarkKey = "it1:6c6573736f6e666c6f772d69742d6b6579"

var itEncode = media.EncodeOptions{CRF: 23, Preset: "ultrafast"}

func itWatermarkKeys(t testing.TB) *watermark.Keyring {
	t.Helper()
	kr, err := watermark.ParseKeyring(itWatermarkKey)
	if err != nil {
		t.Fatal(err)
	}
	return &kr
}

// topLevelBoxes lists an MP4's top-level box types in order.
func topLevelBoxes(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for off := 0; off+8 <= len(b); {
		size := int(binary.BigEndian.Uint32(b[off:]))
		typ := string(b[off+4 : off+8])
		if size == 1 && off+16 <= len(b) {
			size = int(binary.BigEndian.Uint64(b[off+8:]))
		}
		if size < 8 {
			break
		}
		out = append(out, typ)
		off += size
	}
	return out
}

// getRaw fetches a path's body as bytes.
func (s *stack) getRaw(key, path string) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.api.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// detect posts a file to POST /v1/watermark/detect.
func (s *stack) detect(key, filename string, file []byte) (int, map[string]any) {
	s.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("file", filename)
	part.Write(file)
	mw.Close()
	req, _ := http.NewRequest("POST", s.api.URL+"/v1/watermark/detect", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return s.do(key, req)
}

// TestWatermarkEndToEnd: a real clip with audio is approved, watermarked and
// published; its rendition is a valid H.264 MP4 with the same frames,
// duration and audio; detection through the API finds the registry id and
// the video; a retried activity keeps the registry record.
func TestWatermarkEndToEnd(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	clip := testenv.SharedVideo(t, "car-detection.mp4")
	code, body := s.upload(appKey, lessonForm(clip))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	id := body["id"].(string)
	// Before publication the app gets a clear "not yet".
	if code, b := s.getRaw(appKey, "/v1/videos/"+id+"/rendition"); code != http.StatusConflict {
		t.Logf("rendition while processing: %d %s (the pipeline may already be done)", code, b)
	}
	v := s.waitState(id, 5*time.Minute)
	if v["state"] != "published" {
		t.Fatalf("state %v: %v", v["state"], v["error"])
	}
	stageOK := false
	for _, st := range v["stages"].([]any) {
		m := st.(map[string]any)
		if m["name"] == activities.StageWatermark && m["state"] == "succeeded" {
			stageOK = true
		}
	}
	if !stageOK {
		t.Fatalf("no succeeded watermark stage: %v", v["stages"])
	}
	rec, err := s.catalog.WatermarkOf(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.TeacherID != "t-1" || rec.KeyID != "it1" {
		t.Fatalf("registry record %+v", rec)
	}

	code, rendition := s.getRaw(appKey, "/v1/videos/"+id+"/rendition")
	if code != http.StatusOK || len(rendition) < 10_000 {
		t.Fatalf("GET rendition: %d, %d bytes", code, len(rendition))
	}
	if boxes := topLevelBoxes(t, rendition); len(boxes) < 3 || boxes[0] != "ftyp" || strings.Index(strings.Join(boxes, ","), "moov") > strings.Index(strings.Join(boxes, ","), "mdat") {
		t.Fatalf("top-level boxes %v: want ftyp first and moov before mdat (+faststart)", boxes)
	}
	out := filepath.Join(t.TempDir(), "rendition.mp4")
	if err := os.WriteFile(out, rendition, 0o644); err != nil {
		t.Fatal(err)
	}
	srcInfo, err := media.ProbeStream(ctx, clip)
	if err != nil {
		t.Fatal(err)
	}
	outInfo, err := media.ProbeStream(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	probe, _ := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,pix_fmt", "-of", "csv=p=0", out).Output()
	if strings.TrimSpace(string(probe)) != "h264,yuv420p" {
		t.Fatalf("rendition video stream %q, want h264,yuv420p", probe)
	}
	sv, sa := testenv.CountPackets(t, clip)
	ov, oa := testenv.CountPackets(t, out)
	if d := ov - sv; d < -1 || d > 1 {
		t.Fatalf("rendition has %d frames, source %d", ov, sv)
	}
	if math.Abs(outInfo.DurationSec-srcInfo.DurationSec) > 1/srcInfo.FPS+0.001 {
		t.Fatalf("rendition lasts %.3f s, source %.3f s", outInfo.DurationSec, srcInfo.DurationSec)
	}
	if !outInfo.HasAudio || outInfo.AudioCodec != "aac" || oa < sa-2 {
		t.Fatalf("rendition audio %v %s (%d packets, source %d)", outInfo.HasAudio, outInfo.AudioCodec, oa, sa)
	}
	if outInfo.Width != srcInfo.Width || outInfo.Height != srcInfo.Height || outInfo.Rate != srcInfo.Rate {
		t.Fatalf("rendition %+v, source %+v", outInfo, srcInfo)
	}

	// Detection through the API finds the id and the video.
	code, det := s.detect(reviewerKey, "leaked.mp4", rendition)
	if code != http.StatusOK {
		t.Fatalf("detect: %d %v", code, det)
	}
	video, _ := det["video"].(map[string]any)
	if det["found"] != true || det["payload"] != rec.ID.String() || video == nil || video["id"] != id || video["teacher_id"] != "t-1" {
		t.Fatalf("detect: %v, want payload %s for video %s", det, rec.ID, id)
	}
	// The source itself carries no mark.
	src, _ := os.ReadFile(clip)
	if code, det := s.detect(reviewerKey, "source.mp4", src); code != http.StatusOK || det["found"] != false {
		t.Fatalf("detect on the unmarked source: %d %v", code, det)
	}

	// A retried activity (e.g. after a lost completion) keeps the record.
	acts := &activities.Activities{Catalog: s.catalog, Blobs: s.blobs, TempDir: t.TempDir(), WatermarkKeys: itWatermarkKeys(t), Encode: itEncode}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts.Watermark)
	vd, _ := s.catalog.GetVideo(ctx, id)
	val, err := env.ExecuteActivity(acts.Watermark, activities.WatermarkInput{VideoRef: activities.VideoRef{VideoID: id, BlobKey: vd.BlobKey}})
	if err != nil {
		t.Fatal(err)
	}
	var res activities.WatermarkResult
	val.Get(&res)
	again, err := s.catalog.WatermarkOf(ctx, id)
	if err != nil || again != rec || res.Payload != rec.ID.String() || res.Frames != ov {
		t.Fatalf("re-run: result %+v, record %+v (was %+v), %v", res, again, rec, err)
	}
}

// TestWorkerKilledDuringWatermark: SIGKILL the worker process while it is
// watermarking, after it stored a segment. Another worker resumes from the
// stored segments; the video is published with one registry record and a
// complete rendition, and the retry seeks past the stored segments. On
// camera-like content (the fine grid) the frames pass through the worker;
// a slide deck (the block grid) is marked by one ffmpeg process, which
// dies with the worker.
func TestWorkerKilledDuringWatermark(t *testing.T) {
	if testing.Short() {
		t.Skip("kills worker processes; not in -short")
	}
	// 5 minutes at 640x360: several work-sized segments (media.Transcode sizes
	// them by pixels), long enough to kill mid-pass.
	t.Run("fine grid", func(t *testing.T) {
		testWorkerKilledDuringWatermark(t, watermark.GridFine, fiveMinuteClip(t))
	})
	t.Run("block grid", func(t *testing.T) {
		testWorkerKilledDuringWatermark(t, watermark.GridBlock, testenv.Clip(t, "watermark-durability-slides-640x360-300s.mp4",
			"-f", "lavfi", "-i", "color=c=0xf4f4f4:s=640x360:r=25:d=300",
			"-f", "lavfi", "-i", "sine=frequency=330:duration=300",
			"-vf", "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:text='Lesson 7, page %{eif\\:floor(t/3)+1\\:d}':fontsize=28:fontcolor=0x202020:x=40:y=60",
			"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"))
	})
}

// fiveMinuteClip is 5 minutes of testsrc2 at 640x360 and 25 fps, with audio.
func fiveMinuteClip(t *testing.T) string {
	return testenv.Clip(t, "watermark-durability-640x360-300s.mp4",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=300",
		"-f", "lavfi", "-i", "sine=frequency=330:duration=300", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest")
}

func testWorkerKilledDuringWatermark(t *testing.T, grid watermark.Grid, clip string) {
	s := newStack(t, stackOptions{noWorker: true})
	ctx := context.Background()
	code, body := s.upload(appKey, lessonForm(clip))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	id := body["id"].(string)

	w := s.startWorkerProcess(t, 1)
	s.waitStageRunning(t, id, activities.StageWatermark, 5*time.Minute)
	deadline := time.Now().Add(3 * time.Minute)
	for len(s.blobKeys("renditions/"+id+"/work/")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no segment stored within 3 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := w.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w.Wait()
	stored := len(s.blobKeys("renditions/" + id + "/work/"))
	t.Logf("worker killed during watermark with %d segments stored", stored)

	s.startWorkerProcess(t, 2)
	v := s.waitState(id, 10*time.Minute)
	if v["state"] != "published" {
		t.Fatalf("state %v: %v", v["state"], v["error"])
	}
	vd, _ := s.catalog.GetVideo(ctx, id)
	for _, st := range vd.Stages {
		if st.Name == activities.StageWatermark && st.Attempts < 2 {
			t.Errorf("watermark stage ran %d times; the kill should have forced a retry", st.Attempts)
		}
	}
	rec, err := s.catalog.WatermarkOf(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.catalog.Rendition(ctx, id)
	if err != nil || r.Payload != rec.ID || r.Frames != 7500 {
		t.Fatalf("rendition %+v (%v), want 7500 frames with payload %s", r, err, rec.ID)
	}
	if left := s.blobKeys("renditions/" + id + "/work/"); len(left) != 0 {
		t.Fatalf("work segments left: %v", left)
	}
	// The completed attempt says how many segments it took over.
	iter := s.temporal.GetWorkflowHistory(ctx, workflows.WorkflowID(id), "", false, 0)
	var done activities.WatermarkResult
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil {
			for _, p := range a.GetResult().GetPayloads() {
				var res activities.WatermarkResult
				if json.Unmarshal(p.GetData(), &res) == nil && res.RenditionKey != "" {
					done = res
				}
			}
		}
	}
	if done.Resumed < 1 || done.Resumed > stored || done.Grid != grid.String() {
		t.Fatalf("the retry resumed %d segments on the %s grid; %d were stored at the kill, want the %s grid", done.Resumed, done.Grid, stored, grid)
	}
	if !done.Seeked { // the stored segments name the frame after them
		t.Errorf("the retry decoded the finished segments again instead of seeking past them")
	}
	p, _ := s.blobs.(*blob.FS).LocalPath(r.BlobKey)
	if v, a := testenv.CountPackets(t, p); v != 7500 || a == 0 {
		t.Fatalf("rendition has %d frames and %d audio packets", v, a)
	}
	kr := itWatermarkKeys(t)
	d := watermark.NewDetector(*kr)
	if _, err := media.Decode(ctx, p, media.DecodeOptions{MaxSeconds: 60, MaxFPS: 5}, func(f media.RawFrame) error {
		return d.Add(watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width})
	}); err != nil {
		t.Fatal(err)
	}
	if got := d.Result(); !got.Found || got.Payload != watermark.Payload(rec.ID) {
		t.Fatalf("detect on the resumed rendition: %+v", got)
	}
}
