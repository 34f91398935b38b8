package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/internal/testenv/wmclip"
	"github.com/lessonflow/lessonflow/watermark"
)

const (
	wmAppKey      = "wm-app-key-0123456789abcdef"
	wmReviewerKey = "wm-reviewer-key-0123456789abcdef"
	wmAdminKey    = "wm-admin-key-0123456789abcdef"
	wmKeyring     = "k1:00112233445566778899aabbccddeeff"
)

type wmServer struct {
	*httptest.Server
	srv *Server
	cat *catalog.SQLite
	kr  watermark.Keyring
}

func newWMServer(t *testing.T) *wmServer { return newWMServerOn(t, newFS(t)) }

func newWMServerOn(t *testing.T, blobs blob.Store) *wmServer {
	t.Helper()
	cat := testCatalog(t)
	kr, err := watermark.ParseKeyring(wmKeyring)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Catalog: cat, Blobs: blobs, MaxUploadBytes: 1 << 20, WatermarkKeys: &kr, DetectMaxBytes: 8 << 20,
		Keys: map[string]string{wmAppKey: RoleApp, wmReviewerKey: RoleReviewer, wmAdminKey: RoleAdmin}}
	return &wmServer{Server: startServer(t, s), srv: s, cat: cat, kr: kr}
}

func wmErrCode(b []byte) string {
	var e errorBody
	_ = json.Unmarshal(b, &e)
	return e.Error.Code
}

// markedClip is a 2 s 640x360 clip marked with payload under key.
func markedClip(t *testing.T, kr watermark.Keyring, payload watermark.Payload) string {
	t.Helper()
	src := testenv.Clip(t, "wm-api-testsrc2-640x360-2s.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=2",
		"-c:v", "libx264", "-preset", "ultrafast")
	path, _ := wmclip.Mark(t, src, kr, payload, 23)
	return path
}

// streamStore's objects cannot seek, like a store that can only stream.
type streamStore struct{ blob.Store }

func (s streamStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{rc, rc}, nil
}

// TestRendition serves a rendition from files and from S3 (ranges from
// both), and from a store that can only stream (the whole object).
func TestRendition(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) blob.Store{
		"fs": func(t *testing.T) blob.Store { return newFS(t) },
		"s3": func(t *testing.T) blob.Store {
			svc := testenv.S3(t)
			s, err := blob.NewS3(context.Background(), blob.S3Config{Endpoint: svc.Endpoint, Bucket: svc.Bucket(t),
				AccessKey: svc.AccessKey, SecretKey: svc.SecretKey, Insecure: svc.Insecure})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"stream": func(t *testing.T) blob.Store { return streamStore{newFS(t)} },
	} {
		t.Run(name, func(t *testing.T) { testRendition(t, newWMServerOn(t, open(t)), name != "stream") })
	}
}

func testRendition(t *testing.T, ws *wmServer, ranges bool) {
	ctx := context.Background()
	id := "v" + strings.Repeat("a", 24)
	if _, _, err := ws.cat.CreateVideo(ctx, catalog.Video{ID: id, Title: "t", Tags: []string{}, TeacherID: "teacher-1"}); err != nil {
		t.Fatal(err)
	}
	get := func(key, path string, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", ws.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return send(t, key, req)
	}
	path := "/v1/videos/" + id + "/rendition"
	for _, tc := range []struct {
		state catalog.State
		code  int
		err   string
	}{
		{catalog.StateProcessing, 409, "not_ready"},
		{catalog.StateApproved, 409, "not_ready"},
		{catalog.StateBlocked, 404, "not_published"},
		{catalog.StateNeedsReview, 404, "not_published"},
		{catalog.StateRejectedInvalid, 404, "not_published"},
		{catalog.StatePublished, 404, "no_rendition"},
	} {
		if err := ws.cat.SetState(ctx, id, tc.state, ""); err != nil {
			t.Fatal(err)
		}
		resp, b := get(wmAppKey, path, nil)
		if resp.StatusCode != tc.code || wmErrCode(b) != tc.err {
			t.Errorf("state %s: %d %s, want %d %s", tc.state, resp.StatusCode, b, tc.code, tc.err)
		}
	}
	// Store a rendition.
	rec, err := ws.cat.RegisterWatermark(ctx, id, "teacher-1", "k1")
	if err != nil {
		t.Fatal(err)
	}
	clip, err := os.ReadFile(markedClip(t, ws.kr, watermark.Payload(rec.ID)))
	if err != nil {
		t.Fatal(err)
	}
	info, err := ws.srv.Blobs.Put(ctx, "renditions/"+id+"/watermarked.mp4", bytes.NewReader(clip))
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.cat.SetRendition(ctx, catalog.Rendition{VideoID: id, BlobKey: info.Key, SHA256: info.SHA256, SizeBytes: info.Size,
		Payload: rec.ID, Frames: 50}); err != nil {
		t.Fatal(err)
	}
	resp, b := get(wmAppKey, path, nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, clip) || resp.Header.Get("Content-Type") != "video/mp4" ||
		resp.Header.Get("ETag") != `"`+info.SHA256+`"` {
		t.Fatalf("rendition: %d, %d bytes (want %d), headers %v", resp.StatusCode, len(b), len(clip), resp.Header)
	}
	if !ranges {
		resp, b = get(wmAppKey, path, map[string]string{"Range": "bytes=100-199"})
		if resp.StatusCode != 200 || !bytes.Equal(b, clip) || resp.Header.Get("Content-Length") != strconv.Itoa(len(clip)) {
			t.Fatalf("streamed with a Range header: %d, %d bytes, headers %v", resp.StatusCode, len(b), resp.Header)
		}
		return
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("no Accept-Ranges: %v", resp.Header)
	}
	resp, b = get(wmAppKey, path, map[string]string{"Range": "bytes=100-199"})
	if resp.StatusCode != 206 || !bytes.Equal(b, clip[100:200]) || !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes 100-199/") {
		t.Fatalf("range: %d, %d bytes, %q", resp.StatusCode, len(b), resp.Header.Get("Content-Range"))
	}
	if resp, _ = get(wmAppKey, path, map[string]string{"If-None-Match": `"` + info.SHA256 + `"`}); resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	if resp, _ = get(wmAppKey, path, map[string]string{"Range": "bytes=99999999-"}); resp.StatusCode != 416 {
		t.Fatalf("unsatisfiable range: %d, want 416", resp.StatusCode)
	}
	// Taken offline (e.g. blocked after reports): never served again.
	ws.cat.SetState(ctx, id, catalog.StateBlocked, "reports")
	if resp, b = get(wmAppKey, path, nil); resp.StatusCode != 404 {
		t.Fatalf("blocked after publication: %d %s", resp.StatusCode, b)
	}
	ws.cat.SetState(ctx, id, catalog.StatePublished, "")
	for key, code := range map[string]int{"": 401, wmReviewerKey: 403, wmAdminKey: 200} {
		if resp, _ := get(key, path, nil); resp.StatusCode != code {
			t.Errorf("key %q: %d, want %d", key, resp.StatusCode, code)
		}
	}
	for _, p := range []string{"/v1/videos/v" + strings.Repeat("b", 24) + "/rendition", "/v1/videos/..%2f..%2fetc/rendition", "/v1/videos/x/rendition"} {
		if resp, b := get(wmAppKey, p, nil); resp.StatusCode != 404 {
			t.Errorf("%s: %d %s", p, resp.StatusCode, b)
		}
	}
}

func (ws *wmServer) detect(t *testing.T, key string, fields map[string]string, filename string, file []byte) (*http.Response, []byte) {
	t.Helper()
	boundary, body := multipartBody(fields, filename, file)
	req, _ := http.NewRequest("POST", ws.URL+"/v1/watermark/detect", bytes.NewReader(body))
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	return send(t, key, req)
}

func TestDetectFindsRegisteredVideo(t *testing.T) {
	ws := newWMServer(t)
	ctx := context.Background()
	id := "v" + strings.Repeat("c", 24)
	if _, _, err := ws.cat.CreateVideo(ctx, catalog.Video{ID: id, Title: "Fractions", Tags: []string{}, TeacherID: "teacher-9"}); err != nil {
		t.Fatal(err)
	}
	rec, err := ws.cat.RegisterWatermark(ctx, id, "teacher-9", "k1")
	if err != nil {
		t.Fatal(err)
	}
	clip, _ := os.ReadFile(markedClip(t, ws.kr, watermark.Payload(rec.ID)))
	resp, b := ws.detect(t, wmReviewerKey, nil, "leak.mp4", clip)
	var got struct {
		Found      bool    `json:"found"`
		Payload    string  `json:"payload"`
		Confidence float64 `json:"confidence"`
		KeyID      string  `json:"key_id"`
		Media      string  `json:"media"`
		Video      *struct {
			ID        string `json:"id"`
			Title     string `json:"title"`
			TeacherID string `json:"teacher_id"`
		} `json:"video"`
	}
	if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if !got.Found || got.Payload != rec.ID.String() || got.KeyID != "k1" || got.Media != "video" || got.Confidence <= 0 ||
		got.Video == nil || got.Video.ID != id || got.Video.Title != "Fractions" || got.Video.TeacherID != "teacher-9" {
		t.Fatalf("detect: %s", b)
	}

	// A payload the registry does not know: found, but no video.
	clip, _ = os.ReadFile(markedClip(t, ws.kr, watermark.Payload(rec.ID^0xff00)))
	resp, b = ws.detect(t, wmAdminKey, nil, "other.mp4", clip)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"found":true`) || !strings.Contains(string(b), `"video":null`) {
		t.Fatalf("unknown payload: %d %s", resp.StatusCode, b)
	}
}

func TestDetectUnmarkedAndBadInput(t *testing.T) {
	ws := newWMServer(t)
	unmarked, err := os.ReadFile(testenv.Clip(t, "wm-api-testsrc2-640x360-2s.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=2",
		"-c:v", "libx264", "-preset", "ultrafast"))
	if err != nil {
		t.Fatal(err)
	}
	resp, b := ws.detect(t, wmReviewerKey, nil, "clean.mp4", unmarked)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"found":false`) || strings.Contains(string(b), `"payload"`) {
		t.Fatalf("unmarked: %d %s", resp.StatusCode, b)
	}
	png, err := os.ReadFile(testenv.Clip(t, "wm-api-still.png", "-f", "lavfi", "-i", "testsrc2=size=640x360", "-frames:v", "1"))
	if err != nil {
		t.Fatal(err)
	}
	resp, b = ws.detect(t, wmReviewerKey, nil, "still.png", png)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"media":"image"`) || !strings.Contains(string(b), `"found":false`) {
		t.Fatalf("image: %d %s", resp.StatusCode, b)
	}
	for name, tc := range map[string]struct {
		key    string
		fields map[string]string
		file   []byte
		code   int
		err    string
	}{
		"app role":    {wmAppKey, nil, unmarked, 403, "forbidden"},
		"no key":      {"", nil, unmarked, 401, "unauthenticated"},
		"no file":     {wmReviewerKey, nil, nil, 400, "invalid_file"},
		"empty file":  {wmReviewerKey, nil, []byte{}, 400, "invalid_file"},
		"extra field": {wmReviewerKey, map[string]string{"title": "x"}, unmarked, 400, "invalid_title"},
		"text":        {wmReviewerKey, nil, []byte("this is a letter, not a video\n"), 422, "invalid_media"},
		"pdf":         {wmReviewerKey, nil, []byte("%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"), 422, "invalid_media"},
		"too large":   {wmReviewerKey, nil, make([]byte, 9<<20), 413, "too_large"},
	} {
		resp, b := ws.detect(t, tc.key, tc.fields, "f.bin", tc.file)
		if resp.StatusCode != tc.code || wmErrCode(b) != tc.err {
			t.Errorf("%s: %d %s, want %d %s", name, resp.StatusCode, b, tc.code, tc.err)
		}
	}
	req, _ := http.NewRequest("POST", ws.URL+"/v1/watermark/detect", strings.NewReader(`{"file":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, b := send(t, wmReviewerKey, req); resp.StatusCode != 415 {
		t.Fatalf("json body: %d %s", resp.StatusCode, b)
	}
	ws.srv.WatermarkKeys = nil
	if resp, b := ws.detect(t, wmReviewerKey, nil, "clean.mp4", unmarked); resp.StatusCode != 503 {
		t.Fatalf("no key: %d %s", resp.StatusCode, b)
	}
}
