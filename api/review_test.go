package api

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/review"
)

const (
	tAppKey      = "app-key-0123456789abcdef"
	tReviewerKey = "reviewer-key-0123456789abcdef"
)

// reviewServer is an API over a real SQLite catalog and blob store with one
// review item; no Temporal: these tests stop before an Update is sent.
func reviewServer(t *testing.T) (*httptest.Server, review.Item) {
	t.Helper()
	cat := testCatalog(t)
	blobs := newFS(t)
	vid := "v" + strings.Repeat("ab", 12)
	if _, _, err := cat.CreateVideo(context.Background(), catalog.Video{ID: vid, Title: "x", TeacherID: "t-1"}); err != nil {
		t.Fatal(err)
	}
	// A checkerboard thumbnail: blurring changes it a lot.
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := range 64 {
			if (x/4+y/4)%2 == 0 {
				img.Set(x, y, color.White)
			} else {
				img.Set(x, y, color.Black)
			}
		}
	}
	var buf bytes.Buffer
	_ = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95})
	key := "evidence/" + vid + "/ri/00.jpg"
	if _, err := blob.PutBytes(context.Background(), blobs, key, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	it := review.Item{ID: "ri_" + strings.Repeat("0", 20), VideoID: vid, Kind: review.KindModel, State: review.StatePending,
		Version: 1, Reason: "drawing", CreatedAt: now, UpdatedAt: now, WorkflowID: "review-model-" + vid, RunID: "r1",
		Evidence: review.Evidence{Segments: []review.Segment{{Signal: "drawing", StartMS: 0, EndMS: 4000, ThumbKey: key}}}}
	if err := cat.SaveReviewItem(context.Background(), it); err != nil {
		t.Fatal(err)
	}
	s := &Server{Catalog: cat, Blobs: blobs, Keys: map[string]string{tAppKey: RoleApp, tReviewerKey: RoleReviewer},
		EvidenceKey: []byte(strings.Repeat("e", 32)), EvidenceTTL: time.Minute}
	return startServer(t, s), it
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestReviewRoutesValidate(t *testing.T) {
	srv, it := reviewServer(t)
	item := "/v1/review/items/" + it.ID
	for _, c := range []struct {
		key, method, path, body string
		status                  int
		code                    string
	}{
		{tAppKey, "GET", "/v1/review/items", "", 403, "forbidden"},
		{tAppKey, "POST", item + "/claim", "", 403, "forbidden"},
		{"", "GET", item, "", 401, "unauthenticated"},
		{tReviewerKey, "GET", "/v1/review/items/ri_" + strings.Repeat("f", 20), "", 404, "not_found"},
		{tReviewerKey, "GET", "/v1/review/items/../../etc", "", 404, ""},
		{tReviewerKey, "POST", "/v1/review/items/nope/claim", "", 404, "not_found"},
		{tReviewerKey, "POST", "/v1/review/items/ri_" + strings.Repeat("f", 20) + "/decision", `{"decision":"approve"}`, 404, "not_found"},
		{tReviewerKey, "POST", item + "/decision", `{"decision":"delete"}`, 400, "invalid_decision"},
		{tReviewerKey, "POST", item + "/decision", `{"decision":"block","reason":"no code"}`, 400, "invalid_decision"},
		{tReviewerKey, "POST", item + "/decision", `{"decision":"approve","extra":1}`, 400, "invalid_body"},
		{tReviewerKey, "POST", item + "/decision", `{"decision":"approve"} {}`, 400, "invalid_body"},
		{tReviewerKey, "POST", item + "/decision", ``, 400, "invalid_body"},
		{tReviewerKey, "GET", "/v1/review/items?state=gone", "", 400, "invalid_query"},
		{tReviewerKey, "GET", "/v1/review/items?cursor=zz", "", 400, "invalid_query"},
		{tReviewerKey, "GET", "/v1/review/items?limit=0", "", 400, "invalid_query"},
		{tReviewerKey, "GET", "/v1/review/items?sort=x", "", 400, "invalid_query"},
		{tReviewerKey, "POST", "/v1/videos/" + it.VideoID + "/reports", `{"reason":"x"}`, 403, "forbidden"},
		{tAppKey, "POST", "/v1/videos/" + it.VideoID + "/reports", `{"reason":""}`, 400, "invalid_report"},
		{tAppKey, "POST", "/v1/videos/" + it.VideoID + "/reports", `{"reason":"spam"}`, 409, "not_published"},
		{tAppKey, "POST", "/v1/videos/v" + strings.Repeat("0", 24) + "/reports", `{"reason":"spam"}`, 404, "not_found"},
		{tAppKey, "POST", "/v1/videos/" + it.VideoID + "/appeals", `{"teacher_id":"t-2","statement":"fine"}`, 403, "not_teacher"},
		{tAppKey, "POST", "/v1/videos/" + it.VideoID + "/appeals", `{"teacher_id":"t-1"}`, 400, "invalid_appeal"},
		{tAppKey, "POST", "/v1/videos/" + it.VideoID + "/appeals", `{"teacher_id":"t-1","statement":"fine"}`, 409, "not_blocked"},
		{tAppKey, "GET", "/v1/videos/v" + strings.Repeat("0", 24) + "/decisions", "", 404, "not_found"},
	} {
		status, body, _ := callRaw(t, srv, c.key, c.method, c.path, c.body)
		if status != c.status || (c.code != "" && errCode(body) != c.code) {
			t.Errorf("%s %s %s: %d %v, want %d %s", c.method, c.path, c.body, status, body, c.status, c.code)
		}
	}
	status, body, _ := callRaw(t, srv, tAppKey, "GET", "/v1/videos/"+it.VideoID+"/decisions", "")
	if status != 200 || body["items"] == nil {
		t.Fatalf("decisions: %d %v", status, body)
	}
}

func TestReviewItemEvidence(t *testing.T) {
	srv, it := reviewServer(t)
	status, body, raw := callRaw(t, srv, tReviewerKey, "GET", "/v1/review/items", "")
	if status != 200 {
		t.Fatalf("list: %d %v", status, body)
	}
	if bytes.Contains(raw, []byte("thumbnail_key")) || bytes.Contains(raw, []byte("evidence/"+it.VideoID)) {
		t.Fatalf("blob keys leak: %s", raw)
	}
	items := body["items"].([]any)
	if len(items) != 1 || body["next_cursor"] != "" {
		t.Fatalf("items %v", body)
	}
	got := items[0].(map[string]any)
	for _, f := range []string{"id", "video_id", "kind", "state", "priority", "reason", "evidence", "claimed_by", "lease_expires_at", "decision"} {
		if _, ok := got[f]; !ok {
			t.Errorf("item lacks %q", f)
		}
	}
	if got["id"] != it.ID || got["state"] != "pending" || got["kind"] != "model" {
		t.Fatalf("item %v", got)
	}
	seg := got["evidence"].(map[string]any)["segments"].([]any)[0].(map[string]any)
	blurURL, sharpURL := seg["thumbnail_url"].(string), seg["sharp_url"].(string)
	if blurURL == "" || sharpURL == "" || blurURL == sharpURL {
		t.Fatalf("urls %q %q", blurURL, sharpURL)
	}
	// No bearer key: the token is the credential.
	s1, _, blurred := callRaw(t, srv, "", "GET", blurURL, "")
	s2, _, sharp := callRaw(t, srv, "", "GET", sharpURL, "")
	if s1 != 200 || s2 != 200 {
		t.Fatalf("evidence: %d %d", s1, s2)
	}
	if d := meanDiff(t, blurred, sharp); d < 40 {
		t.Fatalf("blurred and sharp thumbnails differ by %.1f levels on average: not blurred", d)
	}
	// A tampered token, another key's token, an expired one.
	tok := strings.TrimPrefix(blurURL, "/v1/review/evidence/")
	if s, b, _ := callRaw(t, srv, "", "GET", "/v1/review/evidence/"+tok[:len(tok)-2]+"AA", ""); s != 403 || errCode(b) != "bad_token" {
		t.Fatalf("tampered: %d %v", s, b)
	}
	other, _ := review.SignEvidence([]byte(strings.Repeat("x", 32)), review.EvidenceClaims{Key: "evidence/x.jpg", Sharp: true, Expires: time.Now().Add(time.Hour).Unix()})
	if s, _, _ := callRaw(t, srv, "", "GET", "/v1/review/evidence/"+other, ""); s != 403 {
		t.Fatalf("foreign token: %d", s)
	}
	expired, _ := review.SignEvidence([]byte(strings.Repeat("e", 32)), review.EvidenceClaims{Key: "evidence/x.jpg", Expires: time.Now().Add(-time.Second).Unix()})
	if s, _, _ := callRaw(t, srv, "", "GET", "/v1/review/evidence/"+expired, ""); s != 403 {
		t.Fatalf("expired token: %d", s)
	}
	upload, _ := review.SignEvidence([]byte(strings.Repeat("e", 32)), review.EvidenceClaims{Key: "uploads/1-x", Sharp: true, Expires: time.Now().Add(time.Hour).Unix()})
	if s, _, _ := callRaw(t, srv, "", "GET", "/v1/review/evidence/"+upload, ""); s != 403 {
		t.Fatalf("a token for a non-evidence blob: %d", s)
	}
}

func meanDiff(t *testing.T, a, b []byte) float64 {
	t.Helper()
	ia, err1 := jpeg.Decode(bytes.NewReader(a))
	ib, err2 := jpeg.Decode(bytes.NewReader(b))
	if err1 != nil || err2 != nil {
		t.Fatalf("decode: %v %v", err1, err2)
	}
	var sum float64
	r := ia.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ga := color.GrayModel.Convert(ia.At(x, y)).(color.Gray).Y
			gb := color.GrayModel.Convert(ib.At(x, y)).(color.Gray).Y
			d := float64(ga) - float64(gb)
			if d < 0 {
				d = -d
			}
			sum += d
		}
	}
	return sum / float64(r.Dx()*r.Dy())
}

func TestReviewMe(t *testing.T) {
	const named = "named-reviewer-key-0123456789"
	s := &Server{Catalog: testCatalog(t), Keys: map[string]string{tAppKey: RoleApp, tReviewerKey: RoleReviewer, named: RoleReviewer},
		Names: map[string]string{named: "alice"}}
	srv := startServer(t, s)
	for _, c := range []struct {
		key    string
		status int
		id     string
		named  bool
	}{
		{tReviewerKey, 200, ReviewerID(tReviewerKey), false},
		{named, 200, "alice", true},
		{tAppKey, 403, "", false},
		{"", 401, "", false},
	} {
		status, body := call(t, srv, c.key, "GET", "/v1/review/me", "")
		if status != c.status || (status == 200 && (body["id"] != c.id || body["named"] != c.named || body["role"] != RoleReviewer)) {
			t.Errorf("key %.6s: %d %v, want %d %s named=%v", c.key, status, body, c.status, c.id, c.named)
		}
	}
}
