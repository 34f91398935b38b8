package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/config"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
)

func TestParseWatermarkEmbed(t *testing.T) {
	def := media.EncodeOptions{CRF: 23, Preset: "medium"}
	a, err := parseWatermarkEmbed([]string{"--payload", "00112233aabbccdd", "in.mp4", "out.mp4", "--crf", "28", "--preset", "veryfast"}, def)
	if err != nil {
		t.Fatal(err)
	}
	if a.payload != 0x00112233aabbccdd || a.in != "in.mp4" || a.out != "out.mp4" || a.encode != (media.EncodeOptions{CRF: 28, Preset: "veryfast"}) {
		t.Fatalf("parsed %+v", a)
	}
	if a, err = parseWatermarkEmbed([]string{"--payload=00112233aabbccdd", "in.mp4", "out.mp4"}, def); err != nil || a.encode != def || a.grid != "auto" {
		t.Fatalf("defaults: %+v %v", a, err)
	}
	if a, err = parseWatermarkEmbed([]string{"--payload=00112233aabbccdd", "--grid", "block", "in.mp4", "out.mp4"}, def); err != nil || a.grid != "block" {
		t.Fatalf("--grid block: %+v %v", a, err)
	}
	for _, args := range [][]string{
		{"in.mp4", "out.mp4"},                               // no payload
		{"--payload", "xyz", "in.mp4", "out.mp4"},           // not hex
		{"--payload", "00112233aabbccd", "in.mp4", "o.mp4"}, // 15 digits
		{"--payload", "00112233aabbccdd0", "i.mp4", "o.mp4"},
		{"--payload", "00112233aabbccdd", "--crf", "52", "i.mp4", "o.mp4"},
		{"--payload", "00112233aabbccdd", "--crf", "0", "i.mp4", "o.mp4"}, // lossless, and not silently 23
		{"--payload", "00112233aabbccdd", "--crf", "x", "i.mp4", "o.mp4"},
		{"--payload", "00112233aabbccdd", "--preset", "warp", "i.mp4", "o.mp4"},
		{"--payload", "00112233aabbccdd", "only-in.mp4"},
		{"--payload", "00112233aabbccdd", "a.mp4", "b.mp4", "c.mp4"},
		{"--payload", "00112233aabbccdd", "same.mp4", "./same.mp4"},
		{"--payload", "00112233aabbccdd", "--bogus", "a.mp4", "b.mp4"},
		{"--payload", "00112233aabbccdd", "--grid", "coarse", "a.mp4", "b.mp4"},
	} {
		if _, err := parseWatermarkEmbed(args, def); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestParseWatermarkDetect(t *testing.T) {
	a, err := parseWatermarkDetect([]string{"leak.mp4", "--json"})
	if err != nil || !a.json || a.file != "leak.mp4" || a.seconds != 30 {
		t.Fatalf("%+v %v", a, err)
	}
	for _, args := range [][]string{{}, {"a.mp4", "b.mp4"}, {"--seconds", "0", "a.mp4"}, {"--seconds", "NaN", "a.mp4"}, {"--jsn", "a.mp4"}} {
		if _, err := parseWatermarkDetect(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// captureStdout runs fn with os.Stdout going to a buffer.
func captureStdout(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, r)
		done <- b.String()
	}()
	ferr := fn()
	os.Stdout = old
	w.Close()
	return <-done, ferr
}

// TestWatermarkEmbedDetectCLI marks a real clip with a registered id and
// traces it back through the local catalog, as an operator would.
func TestWatermarkEmbedDetectCLI(t *testing.T) {
	dataDir := t.TempDir()
	for _, s := range config.Settings {
		t.Setenv(s.Env, "")
	}
	t.Setenv("LESSONFLOW_DATA_DIR", dataDir)
	t.Setenv("LESSONFLOW_WATERMARK_KEY", "ops1:"+strings.Repeat("5a", 32))
	cat, err := catalog.OpenSQLite(filepath.Join(dataDir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: "v" + strings.Repeat("d", 24), Title: "Traffic", Tags: []string{}, TeacherID: "t-3"}); err != nil {
		t.Fatal(err)
	}
	rec, err := cat.RegisterWatermark(ctx, "v"+strings.Repeat("d", 24), "t-3", "ops1")
	cat.Close()
	if err != nil {
		t.Fatal(err)
	}
	src := testenv.SharedVideo(t, "car-detection.mp4")
	out := filepath.Join(t.TempDir(), "marked.mp4")
	if _, err := captureStdout(t, func() error {
		return runWatermarkEmbed(ctx, []string{"--payload", rec.ID.String(), "--preset", "ultrafast", src, out})
	}); err != nil {
		t.Fatal(err)
	}
	vs, err := media.ProbeStream(ctx, out)
	if err != nil || !vs.HasAudio || vs.Width != 768 {
		t.Fatalf("output %+v %v", vs, err)
	}
	stdout, err := captureStdout(t, func() error { return runWatermarkDetect(ctx, []string{"--json", out}) })
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Found      bool    `json:"found"`
		Payload    string  `json:"payload"`
		Confidence float64 `json:"confidence"`
		Video      *struct {
			ID        string `json:"id"`
			TeacherID string `json:"teacher_id"`
		} `json:"video"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if !rep.Found || rep.Payload != rec.ID.String() || rep.Video == nil || rep.Video.ID != rec.VideoID || rep.Video.TeacherID != "t-3" {
		t.Fatalf("detect --json: %s", stdout)
	}
	// A flat 720p slide: auto picks the block grid (32 px cells, 70% of a
	// tile seen), which detect also reads.
	slide := testenv.Clip(t, "cli-slide-1280x720-3s.mp4", "-f", "lavfi", "-i",
		"color=c=0xf0f0f0:s=1280x720:r=25:d=3,drawbox=x=120:y=200:w=900:h=36:color=0x303030:t=fill",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
	slideOut := filepath.Join(t.TempDir(), "slide-marked.mp4")
	stdout, err = captureStdout(t, func() error {
		return runWatermarkEmbed(ctx, []string{"--payload", rec.ID.String(), "--preset", "ultrafast", slide, slideOut})
	})
	if err != nil || !strings.Contains(stdout, "block grid") {
		t.Fatalf("embed the slide: %v %s", err, stdout)
	}
	stdout, err = captureStdout(t, func() error { return runWatermarkDetect(ctx, []string{"--json", slideOut}) })
	if err != nil || json.Unmarshal([]byte(stdout), &rep) != nil || !rep.Found || rep.Payload != rec.ID.String() {
		t.Fatalf("detect the slide: %v %s", err, stdout)
	}
	// Another key reads nothing.
	t.Setenv("LESSONFLOW_WATERMARK_KEY", "other:"+strings.Repeat("a5", 32))
	stdout, err = captureStdout(t, func() error { return runWatermarkDetect(ctx, []string{out, "--json"}) })
	if err != nil || !strings.Contains(stdout, `"found": false`) {
		t.Fatalf("wrong key: %v %s", err, stdout)
	}
	// Not media: an error, not a verdict.
	txt := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(txt, []byte("hello"), 0o644)
	if _, err := captureStdout(t, func() error { return runWatermarkDetect(ctx, []string{txt}) }); err == nil || !media.IsInvalid(err) {
		t.Fatalf("text file: %v", err)
	}
}

func TestDevWatermarkKey(t *testing.T) {
	cfg := config.Config{DataDir: t.TempDir()}
	k1, err := devWatermarkKey(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Watermark.Key = k1
	if _, err := cfg.Watermark.Keyring(); err != nil {
		t.Fatalf("generated key %v", err)
	}
	cfg.Watermark.Key = ""
	k2, err := devWatermarkKey(cfg)
	if err != nil || k2 != k1 {
		t.Fatalf("second run: a different key (%v)", err)
	}
	st, err := os.Stat(cfg.Path(devWatermarkKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", st.Mode(), err)
	}
	cfg.Watermark.Key = "given:" + strings.Repeat("00", 16)
	if k, _ := devWatermarkKey(cfg); k != cfg.Watermark.Key {
		t.Fatal("LESSONFLOW_WATERMARK_KEY not preferred")
	}

	// The evidence key: kept the same way, and valid for the review config.
	e1, err := devEvidenceKey(cfg)
	if err != nil || e1 == k1 || len(e1) < 32 {
		t.Fatalf("evidence key %d bytes, same as the watermark key: %v (%v)", len(e1), e1 == k1, err)
	}
	if e2, _ := devEvidenceKey(cfg); e2 != e1 {
		t.Fatal("evidence key: a different key on the second run")
	}
	cfg.Review.EvidenceKey = strings.Repeat("e", 32)
	if e, _ := devEvidenceKey(cfg); e != cfg.Review.EvidenceKey {
		t.Fatal("LESSONFLOW_EVIDENCE_KEY not preferred")
	}
}
