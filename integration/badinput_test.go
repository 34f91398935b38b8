package integration

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
)

// TestBadUploadsAnswer4xx: each bad request gets a clear 4xx, leaves no blob
// and no row, and the server keeps serving.
func TestBadUploadsAnswer4xx(t *testing.T) {
	s := newStack(t, stackOptions{maxUploadBytes: 1 << 20})
	clip := testenv.Clip(t, "bad-ok.mp4", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p")
	good := func() form { return lessonForm(clip) }
	with := func(f form, k, v string) form { f.fields[k] = v; return f }
	cases := []struct {
		name      string
		key       string
		form      form
		wantCode  int
		wantCode2 string
		wantMsg   string
	}{
		{"no key", "", good(), 401, "unauthenticated", "Bearer"},
		{"unknown key", "nope-nope-nope-nope", good(), 401, "unauthenticated", "unknown"},
		{"reviewer may not upload", reviewerKey, good(), 403, "forbidden", "reviewer"},
		{"no file field", appKey, form{fields: good().fields}, 400, "invalid_file", "required"},
		{"empty file", appKey, form{fields: good().fields, filename: "a.mp4", file: bytes.NewReader(nil)}, 400, "invalid_file", "empty"},
		{"level 9", appKey, with(good(), "level", "9"), 400, "invalid_level", "1 to 6"},
		{"level not a number", appKey, with(good(), "level", "two"), 400, "invalid_level", "1 to 6"},
		{"10 KB title", appKey, with(good(), "title", strings.Repeat("x", 10<<10)), 400, "invalid_title", "at most 200"},
		{"missing title", appKey, with(good(), "title", "  "), 400, "invalid_title", "required"},
		{"bad language", appKey, with(good(), "language", "English!"), 400, "invalid_language", "BCP 47"},
		{"bad teacher", appKey, with(good(), "teacher_id", "../etc"), 400, "invalid_teacher_id", "letters"},
		{"unknown field", appKey, with(good(), "colour", "red"), 400, "invalid_field", "unknown"},
		{"path traversal filename", appKey, func() form { f := good(); f.filename = "../../etc/passwd.mp4"; return f }(), 400, "invalid_file", "path"},
		{"body over the limit", appKey, form{fields: good().fields, filename: "big.mp4", file: bytes.NewReader(make([]byte, 2<<20))}, 413, "too_large", "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := s.upload(c.key, c.form)
			if code != c.wantCode {
				t.Fatalf("status %d, want %d: %v", code, c.wantCode, body)
			}
			e, _ := body["error"].(map[string]any)
			if e == nil || e["code"] != c.wantCode2 || !strings.Contains(e["message"].(string), c.wantMsg) {
				t.Fatalf("error %v, want code %s with %q", body, c.wantCode2, c.wantMsg)
			}
		})
	}
	// Not multipart at all.
	req, _ := http.NewRequest("POST", s.api.URL+"/v1/videos", strings.NewReader(`{"title":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	if code, body := s.do(appKey, req); code != http.StatusUnsupportedMediaType {
		t.Fatalf("JSON body: %d %v", code, body)
	}
	if keys := s.blobKeys(""); len(keys) != 0 {
		t.Fatalf("rejected uploads left blobs: %v", keys)
	}
	if _, list := s.get(adminKey, "/v1/videos"); len(list["items"].([]any)) != 0 {
		t.Fatalf("rejected uploads left rows: %v", list)
	}
	if code, _ := s.get("", "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz after bad input: %d", code)
	}
	// And a good upload still goes through.
	if code, body := s.upload(appKey, good()); code != http.StatusAccepted {
		t.Fatalf("good upload after bad ones: %d %v", code, body)
	}
}

// TestInvalidMediaRejected: what only ffprobe can see ends in state
// rejected_invalid with a reason, and the upload's bytes are removed.
func TestInvalidMediaRejected(t *testing.T) {
	s := newStack(t, stackOptions{limits: media.Limits{MaxDuration: 60 * time.Second, MaxWidth: 1920, MaxHeight: 1080}})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	real, err := os.ReadFile(testenv.SharedVideo(t, "car-detection.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	png := testenv.Clip(t, "bad-frame.png", "-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1")
	pngBytes, _ := os.ReadFile(png)
	audio := testenv.Clip(t, "bad-audio.m4a", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac")
	audioBytes, _ := os.ReadFile(audio)
	big := testenv.Clip(t, "bad-2560.mp4", "-f", "lavfi", "-i", "testsrc2=size=2560x1440:rate=1:duration=1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	long := testenv.Clip(t, "bad-long.mp4", "-f", "lavfi", "-i", "color=c=gray:s=32x32:r=1:d=90", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	cases := map[string]struct {
		path, reason string
	}{
		"truncated mp4":         {write("trunc.mp4", real[:len(real)/3]), ""},
		"png renamed .mp4":      {write("image.mp4", pngBytes), "image"},
		"pdf renamed .mp4":      {write("doc.mp4", []byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")), ""},
		"audio only":            {write("audio.mp4", audioBytes), "audio"},
		"over-limit resolution": {big, "2560"},
		"over-limit duration":   {long, "too long"},
	}
	ids := map[string]string{}
	for name, c := range cases {
		code, body := s.upload(appKey, lessonForm(c.path))
		if code != http.StatusAccepted {
			t.Fatalf("%s: upload %d %v", name, code, body)
		}
		ids[name] = body["id"].(string)
	}
	for name, c := range cases {
		v := s.waitState(ids[name], 2*time.Minute)
		reason, _ := v["error"].(string)
		if v["state"] != "rejected_invalid" || reason == "" || !strings.Contains(strings.ToLower(reason), c.reason) {
			t.Errorf("%s: state %v, reason %q (want rejected_invalid mentioning %q)", name, v["state"], reason, c.reason)
		}
		if d, _ := v["decision"].(map[string]any); d == nil || d["outcome"] != "rejected_invalid" {
			t.Errorf("%s: decision log lacks the rejection: %v", name, v["decision"])
		}
		t.Logf("%s: %s", name, reason)
	}
	if keys := s.blobKeys(""); len(keys) != 0 {
		t.Fatalf("rejected videos left blobs: %v", keys)
	}
	vs, _ := s.catalog.Decisions(context.Background(), ids["audio only"])
	if len(vs) != 1 {
		t.Fatalf("want one decision record, have %d", len(vs))
	}
}
