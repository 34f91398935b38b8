package activities

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

const testKeyring = "k1:000102030405060708090a0b0c0d0e0f,k0:f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"

// failingStore fails puts of keys containing failOn (a worker dying mid-pass).
type failingStore struct {
	blob.Store
	failOn string
	mu     sync.Mutex
	puts   map[string]int // successful Puts by key
}

var errInjected = errors.New("injected put failure")

func (s *failingStore) Put(ctx context.Context, key string, r io.Reader) (blob.Info, error) {
	if s.failOn != "" && strings.Contains(key, s.failOn) {
		return blob.Info{}, errInjected
	}
	info, err := s.Store.Put(ctx, key, r)
	if err == nil {
		s.mu.Lock()
		if s.puts == nil {
			s.puts = map[string]int{}
		}
		s.puts[key]++
		s.mu.Unlock()
	}
	return info, err
}

// putsUnder counts the successful Puts of keys starting with prefix.
func (s *failingStore) putsUnder(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, c := range s.puts {
		if strings.HasPrefix(k, prefix) {
			n += c
		}
	}
	return n
}

type wmFixture struct {
	acts  *Activities
	store *failingStore
	cat   *catalog.SQLite
	ref   VideoRef
	kr    watermark.Keyring
}

func newWMFixture(t *testing.T) *wmFixture {
	t.Helper()
	return newWMFixtureFrom(t, wmActivityClip(t))
}

// wmActivityClip is 6 s of 640x360 testsrc2 at 25 fps with a sine.
func wmActivityClip(t *testing.T) string {
	return testenv.Clip(t, "wm-activity-testsrc2-640x360-25-6s-audio.mp4",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=6",
		"-f", "lavfi", "-i", "sine=frequency=440:duration=6",
		"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest")
}

// newWMFixtureFrom is newWMFixture with the upload src.
func newWMFixtureFrom(t *testing.T, src string) *wmFixture {
	t.Helper()
	fs, err := blob.NewFS(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return newWMFixtureOn(t, src, fs)
}

// newWMFixtureOn is newWMFixtureFrom with the objects in blobs.
func newWMFixtureOn(t *testing.T, src string, blobs blob.Store) *wmFixture {
	t.Helper()
	cat, err := catalog.OpenSQLite(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	store := &failingStore{Store: blobs}
	ctx := context.Background()
	f := testenv.Open(t, src)
	up, err := blobs.Put(ctx, "uploads/1-src", f)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: "v1", Title: "t", Tags: []string{}, TeacherID: "teacher-7",
		BlobKey: up.Key, SizeBytes: up.Size, SHA256: up.SHA256}); err != nil {
		t.Fatal(err)
	}
	kr, err := watermark.ParseKeyring(testKeyring)
	if err != nil {
		t.Fatal(err)
	}
	return &wmFixture{
		acts: &Activities{Catalog: cat, Blobs: store, TempDir: t.TempDir(), WatermarkKeys: &kr,
			Encode: media.EncodeOptions{CRF: 23, Preset: "ultrafast"}, SegmentSeconds: 1},
		store: store, cat: cat, ref: VideoRef{VideoID: "v1", BlobKey: up.Key}, kr: kr,
	}
}

// run executes the activity in Temporal's test environment, starting from
// details (nil: a first attempt), and returns the last heartbeat details.
func (fx *wmFixture) run(t *testing.T, details *watermarkProgress) (WatermarkResult, *watermarkProgress, error) {
	t.Helper()
	return runResumable[WatermarkResult](t, fx.acts.Watermark, WatermarkInput{VideoRef: fx.ref}, details,
		func(watermarkProgress) bool { return true })
}

// runResumable executes activity fn with input in Temporal's test
// environment, starting from heartbeat details (nil: a first attempt), and
// returns its result and the last heartbeat details that keep accepts.
func runResumable[Out, In, D any](t *testing.T, fn any, in In, details *D, keep func(D) bool) (Out, *D, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(fn)
	if details != nil {
		env.SetHeartbeatDetails(*details)
	}
	var last *D
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, enc converter.EncodedValues) {
		var d D
		if enc.Get(&d) == nil && keep(d) {
			last = &d
		}
	})
	var out Out
	val, err := env.ExecuteActivity(fn, in)
	if err != nil {
		return out, last, err
	}
	if err := val.Get(&out); err != nil {
		t.Fatal(err)
	}
	return out, last, nil
}

// file is the object under key as a local file: in place when the store
// keeps files, else a download.
func (fx *wmFixture) file(t *testing.T, key string) string {
	t.Helper()
	if lp, ok := fx.store.Store.(blob.LocalPather); ok {
		p, err := lp.LocalPath(key)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	b, err := blob.GetBytes(context.Background(), fx.store, key, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), filepath.Base(key))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// detect decodes the rendition and runs the detector over every frame.
func (fx *wmFixture) detect(t *testing.T, key string) watermark.Result {
	t.Helper()
	p := fx.file(t, key)
	d := watermark.NewDetector(fx.kr)
	if _, err := media.Decode(context.Background(), p, media.DecodeOptions{}, func(f media.RawFrame) error {
		return d.Add(watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width})
	}); err != nil {
		t.Fatal(err)
	}
	return d.Result()
}

func TestWatermarkActivity(t *testing.T) {
	fx := newWMFixture(t)
	res, last, err := fx.run(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := fx.cat.WatermarkOf(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Payload != rec.ID.String() || res.KeyID != "k1" || rec.TeacherID != "teacher-7" || res.Frames != 150 || res.RenditionKey != RenditionKey("v1") {
		t.Fatalf("result %+v, registry %+v", res, rec)
	}
	// testsrc2's flat colour fields pass the keyframe rule; the trial
	// encodes then find the grids within 2% of each other (either may win).
	if _, err := watermark.ParseGrid(res.Grid); err != nil {
		t.Fatalf("grid %q: %v", res.Grid, err)
	}
	if last == nil || last.Plan == "" || last.Grid != res.Grid {
		t.Fatalf("last heartbeat %+v, want the plan and grid %s", last, res.Grid)
	}
	r, err := fx.cat.Rendition(context.Background(), "v1")
	if err != nil || r.SHA256 != res.SHA256 || r.Frames != 150 || r.Payload != rec.ID {
		t.Fatalf("catalog rendition %+v, %v", r, err)
	}
	if got := fx.detect(t, res.RenditionKey); !got.Found || got.Payload != watermark.Payload(rec.ID) || got.KeyID != "k1" {
		t.Fatalf("detect on the rendition: %+v, want payload %s", got, rec.ID)
	}
	// The work segments are gone; the stage is recorded.
	if left, _ := fx.store.List(context.Background(), renditionWorkPrefix("v1")); len(left) != 0 {
		t.Fatalf("work segments left: %v", left)
	}
	v, _ := fx.cat.GetVideo(context.Background(), "v1")
	if len(v.Stages) != 1 || v.Stages[0].Name != StageWatermark || v.Stages[0].State != catalog.StageSucceeded {
		t.Fatalf("stages %+v", v.Stages)
	}

	// A re-run (e.g. a retry after the result was lost) keeps the registry record.
	again, _, err := fx.run(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Payload != res.Payload {
		t.Fatalf("re-run payload %s, first %s", again.Payload, res.Payload)
	}
}

func TestWatermarkActivityResumes(t *testing.T) {
	t.Run("files", func(t *testing.T) { testWatermarkActivityResumes(t, newWMFixture(t)) })
	// In S3 the segments are objects listed by prefix, and every read of the
	// upload is a download.
	t.Run("s3", func(t *testing.T) {
		svc := testenv.S3(t)
		s3, err := blob.NewS3(context.Background(), blob.S3Config{Endpoint: svc.Endpoint, Bucket: svc.Bucket(t),
			AccessKey: svc.AccessKey, SecretKey: svc.SecretKey, Insecure: svc.Insecure})
		if err != nil {
			t.Fatal(err)
		}
		testWatermarkActivityResumes(t, newWMFixtureOn(t, wmActivityClip(t), s3))
	})
	// Grain keeps the clip off the block grid: the frames go through Go.
	t.Run("fine grid", func(t *testing.T) {
		testWatermarkActivityResumes(t, newWMFixtureFrom(t, testenv.Clip(t, "wm-activity-grain-640x360-25-6s-audio.mp4",
			"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=6,noise=alls=30:allf=t",
			"-f", "lavfi", "-i", "sine=frequency=440:duration=6",
			"-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac", "-shortest")))
	})
}

func testWatermarkActivityResumes(t *testing.T, fx *wmFixture) {
	fx.store.failOn = "seg-000003"
	_, last, err := fx.run(t, nil)
	if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
		t.Fatalf("first attempt: %v, want the injected failure", err)
	}
	// The stored segments are the durable record (the SDK throttles
	// heartbeats, so the server may hold older details than the last one).
	stored, err := fx.store.List(context.Background(), renditionWorkPrefix("v1"))
	if err != nil || len(stored) != 3 {
		t.Fatalf("stored segments %v, %v; want 3", stored, err)
	}
	if last == nil || !strings.Contains(stored[0].Key, "/"+last.Plan+"/seg-000000-25-") {
		t.Fatalf("heartbeat %+v, stored %s", last, stored[0].Key)
	}
	fx.store.failOn = ""
	// The stored segments name the frame after them, whether the frames
	// went through Go (the fine grid) or one ffmpeg process marked them (the
	// block grid, MarkPass): the retry seeks there.
	if res := fx.retry(t, 3); !res.Seeked || res.Grid != last.Grid {
		t.Fatalf("retry %+v: want it resumed by an input seek on the %s grid", res, last.Grid)
	}

	// Details from another plan (settings changed between attempts) are ignored.
	fx.acts.Encode.CRF = 28
	res, _, err := fx.run(t, &watermarkProgress{Plan: "0123456789abcdef", Segments: 5, LastFrames: 25})
	if err != nil || res.Resumed != 0 || res.Frames != 150 {
		t.Fatalf("run with foreign details: %+v, %v", res, err)
	}
}

func TestWatermarkActivityWithoutKey(t *testing.T) {
	fx := newWMFixture(t)
	fx.acts.WatermarkKeys = nil
	_, _, err := fx.run(t, nil)
	if err == nil || !strings.Contains(err.Error(), "LESSONFLOW_WATERMARK_KEY") {
		t.Fatalf("err = %v", err)
	}
	// A key rotated away: the video keeps its registered key id, which is gone.
	kr, _ := watermark.ParseKeyring(testKeyring)
	fx.acts.WatermarkKeys = &kr
	if _, err := fx.cat.RegisterWatermark(context.Background(), "v1", "teacher-7", "old"); err != nil {
		t.Fatal(err)
	}
	_, _, err = fx.run(t, nil)
	if err == nil || !strings.Contains(err.Error(), `"old"`) {
		t.Fatalf("err = %v, want the missing key named", err)
	}
}

func TestFinishedSegments(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		stored   []string
		whole    bool
		segments int
		last     int
		next     string
	}{
		{nil, false, 0, 0, ""},
		{[]string{"seg-000000-25.mp4", "seg-000001-25.mp4", "seg-000003-25.mp4"}, false, 2, 25, ""}, // a gap
		{[]string{"seg-000000-25.mp4", "seg-000001-10.mp4"}, false, 2, 10, ""},                      // the video's end
		{[]string{"seg-000000-10.mp4", "seg-000001-25.mp4"}, false, 1, 10, ""},                      // nothing after a short one
		{[]string{"seg-000000-26.mp4", "seg-000001-25.mp4"}, false, 0, 0, ""},                       // not this plan's size
		{[]string{"seg-000000-25.mp4.part", "junk"}, false, 0, 0, ""},
		{[]string{"seg-000000-40.mp4"}, true, 1, 40, ""},                      // a whole pass: one segment of any length
		{[]string{"seg-000000-25.mp4", "seg-000001-25.mp4"}, true, 1, 25, ""}, // and nothing after it
		// With the next frame's sum (media.Segment.Next), for a resume by seek.
		{[]string{"seg-000000-25-0123456789abcdef.mp4", "seg-000001-25-fedcba9876543210.mp4"}, false, 2, 25, "fedcba9876543210"},
		{[]string{"seg-000000-25-0123456789abcdef.mp4", "seg-000001-25.mp4"}, false, 2, 25, ""},
		{[]string{"seg-000000-25-0123456789ABCDEF.mp4", "seg-000000-25-0123.mp4"}, false, 0, 0, ""}, // malformed sums
	} {
		fs, err := blob.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		a := &Activities{Blobs: fs}
		for _, k := range tc.stored {
			blob.PutBytes(ctx, fs, "renditions/v1/work/p/"+k, []byte("x"))
		}
		p, err := a.finishedSegments(ctx, "renditions/v1/work/p/", 25, tc.whole)
		if err != nil || p.Segments != tc.segments || p.LastFrames != tc.last || len(p.keys) != tc.segments || p.next != tc.next {
			t.Errorf("%v: %+v %v, want %d segments, last %d", tc.stored, p, err, tc.segments, tc.last)
		}
	}
}

// TestWatermarkActivityBlockGrid: a flat 720p slide is marked on the block
// grid, a retry resumes the stored segments on the same grid (it is part of
// the plan), and the rendition reads back.
func TestWatermarkActivityBlockGrid(t *testing.T) {
	fx := newWMFixtureFrom(t, testenv.Clip(t, "wm-activity-slide-1280x720-25-3s.mp4", "-f", "lavfi", "-i",
		"color=c=0xf0f0f0:s=1280x720:r=25:d=3,drawbox=x=100:y=160:w=1000:h=40:color=0x202020:t=fill",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"))
	fx.store.failOn = RenditionKey("v1")
	if _, _, err := fx.run(t, nil); err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
		t.Fatalf("first attempt: %v, want the injected failure", err)
	}
	fx.store.failOn = ""
	res, _, err := fx.run(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Grid != "block" || res.Resumed != 3 || res.Frames != 75 {
		t.Fatalf("retry %+v, want the block grid, 3 segments resumed, 75 frames", res)
	}
	rec, _ := fx.cat.WatermarkOf(context.Background(), "v1")
	if got := fx.detect(t, res.RenditionKey); !got.Found || got.Payload != watermark.Payload(rec.ID) {
		t.Fatalf("detect on the rendition: %+v, want %s", got, rec.ID)
	}
}

// A video that fits one segment is encoded straight into the rendition: the
// stored segment is the finished file, and a retry after it was stored (the
// rendition's own put failed) re-encodes nothing.
func TestWatermarkActivityWhole(t *testing.T) {
	fx := newWMFixture(t)
	fx.acts.SegmentSeconds = 0 // sized by work: the 6 s clip is one segment
	fx.store.failOn = RenditionKey("v1")
	if _, _, err := fx.run(t, nil); err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
		t.Fatalf("first attempt: %v, want the injected failure", err)
	}
	stored, err := fx.store.List(context.Background(), renditionWorkPrefix("v1"))
	if err != nil || len(stored) != 1 || !strings.HasSuffix(stored[0].Key, "/seg-000000-150.mp4") {
		t.Fatalf("stored segments %v, %v; want the whole pass as one", stored, err)
	}
	fx.store.failOn = ""
	fx.retry(t, 1)
	if left, _ := fx.store.List(context.Background(), renditionWorkPrefix("v1")); len(left) != 0 {
		t.Fatalf("work segments left: %v", left)
	}
}

// retry runs the activity again after a failed attempt and checks it
// resumed the stored segments and stored a marked rendition with every frame
// and the audio.
func (fx *wmFixture) retry(t *testing.T, wantResumed int) WatermarkResult {
	t.Helper()
	res, _, err := fx.run(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != wantResumed || res.Frames != 150 {
		t.Fatalf("retry %+v, want %d segments resumed and 150 frames", res, wantResumed)
	}
	if v, a := testenv.CountPackets(t, fx.file(t, res.RenditionKey)); v != 150 || a == 0 {
		t.Fatalf("rendition has %d video frames and %d audio packets", v, a)
	}
	rec, _ := fx.cat.WatermarkOf(context.Background(), "v1")
	if got := fx.detect(t, res.RenditionKey); !got.Found || got.Payload != watermark.Payload(rec.ID) {
		t.Fatalf("detect on the retried rendition: %+v, want %s", got, rec.ID)
	}
	return res
}

// TestChooseWatermarkGridTrial: the keyframes of a still traffic camera
// upscaled to 720p look flat enough for the block grid, but the trial
// encode finds the fine grid cheaper there (README, "grid choice": +3.5%
// against +13.4%) and picks it; a slide keeps the block grid; without a
// trial the keyframe rule alone decides. The trial encodes the frames'
// central quarter (720p), and whole frames make the same choice. The
// slide's keyframes are flat enough to be decisive: its choice runs no
// trial, the camera's does.
func TestChooseWatermarkGridTrial(t *testing.T) {
	kr, err := watermark.ParseKeyring(testKeyring)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := watermark.NewEmbedder(kr.Current)
	if err != nil {
		t.Fatal(err)
	}
	trial := GridTrial{Embedder: emb, Payload: 0x0123456789abcdef, Encode: media.EncodeOptions{CRF: 23, Preset: "veryfast"}, TempDir: t.TempDir()}
	car := testenv.Clip(t, "grid-trial-car-1280x720-6s.mp4", "-i", testenv.SharedVideo(t, "car-detection.mp4"), "-t", "6",
		"-vf", "scale=1280:720", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")
	// At 1080p the upscaled camera is smooth enough to pass for screen
	// content under one level of gradient: only the still-block rule
	// (GridChooser.Decisive) sends it to the trial.
	car1080 := testenv.Clip(t, "grid-trial-car-1920x1080-6s.mp4", "-i", testenv.SharedVideo(t, "car-detection.mp4"), "-t", "6",
		"-vf", "scale=1920:1080", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")
	slide := testenv.Clip(t, "grid-trial-slide-1280x720-6s.mp4", "-f", "lavfi", "-i",
		"color=c=0xf0f0f0:s=1280x720:r=25:d=6,drawbox=x=100:y=160:w=1000:h=40:color=0x202020:t=fill,drawbox=x=100:y=300:w=700:h=30:color=0x404040:t=fill",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	ctx := context.Background()
	for _, c := range []struct {
		name, path      string
		keyframes, want watermark.Grid
		trialRuns       bool
	}{
		{"upscaled camera", car, watermark.GridBlock, watermark.GridFine, true},
		{"upscaled camera 1080p", car1080, watermark.GridBlock, watermark.GridFine, true},
		{"slide", slide, watermark.GridBlock, watermark.GridBlock, false},
	} {
		vs, err := media.ProbeStream(ctx, c.path)
		if err != nil {
			t.Fatal(err)
		}
		if g, err := ChooseWatermarkGrid(ctx, c.path, vs, GridTrial{}); err != nil || g != c.keyframes {
			t.Errorf("%s, keyframes only: %v %v, want %v", c.name, g, err, c.keyframes)
		}
		// The trial encodes the frames' centre (720p); whole frames pick alike.
		var sizes [2][2]int64 // [centre][grid]
		for ci, centre := range []bool{true, false} {
			for gi, g := range []watermark.Grid{watermark.GridFine, watermark.GridBlock} {
				if sizes[ci][gi], err = trialSize(ctx, c.path, vs, trial, g, centre); err != nil {
					t.Fatal(err)
				}
			}
		}
		g, err := ChooseWatermarkGrid(ctx, c.path, vs, trial)
		t.Logf("%s: trial sizes fine %d, block %d bytes (whole frames: %d, %d): %v", c.name,
			sizes[0][0], sizes[0][1], sizes[1][0], sizes[1][1], g)
		if err != nil || g != c.want {
			t.Errorf("%s, with the trial: %v %v, want %v", c.name, g, err, c.want)
		}
		if centre, whole := sizes[0][1] <= sizes[0][0], sizes[1][1] <= sizes[1][0]; centre != whole {
			t.Errorf("%s: the centre's trial picks block %t, whole frames' %t", c.name, centre, whole)
		}
		// A trial that cannot run fails the choice only where it runs.
		broken := trial
		broken.TempDir = filepath.Join(t.TempDir(), "missing")
		g, err = ChooseWatermarkGrid(ctx, c.path, vs, broken)
		if ran := err != nil; ran != c.trialRuns || !ran && g != c.want {
			t.Errorf("%s, trial without a directory: %v %v; want the trial run %t", c.name, g, err, c.trialRuns)
		}
	}
	if _, err := trialSize(ctx, filepath.Join(t.TempDir(), "missing.mp4"), media.VideoStream{Width: 1280, Height: 720, FPS: 25, Rate: "25/1", DurationSec: 6}, trial, watermark.GridFine, true); err == nil {
		t.Error("a trial on a missing file succeeded")
	}
}

// TestWatermarkActivityReusesGrid: a retry marks on the grid the previous
// attempt heartbeated, whatever a new trial would say, so its stored
// segments (whose plan includes the grid) still count.
func TestWatermarkActivityReusesGrid(t *testing.T) {
	for _, g := range []watermark.Grid{watermark.GridFine, watermark.GridBlock} {
		fx := newWMFixture(t)
		res, _, err := fx.run(t, &watermarkProgress{Plan: "0123456789abcdef", Grid: g.String()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Grid != g.String() {
			t.Fatalf("heartbeated grid %s, marked on %s", g, res.Grid)
		}
	}
}
