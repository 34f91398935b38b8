package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/internal/testenv"
)

// TestPipelineOnPostgresAndS3 runs uploads through the whole pipeline in the
// configuration of a deployment on several machines: the catalog in
// PostgreSQL (testenv.Postgres) and the objects in an S3 bucket
// (testenv.S3: versitygw, or the service LESSONFLOW_TEST_S3_ENDPOINT
// names). Every stage reads the upload through a download, the watermark
// pass stores its segments and rendition in the bucket, the API serves the
// rendition with ranged reads, and events and recommendations go through
// Postgres.
func TestPipelineOnPostgresAndS3(t *testing.T) {
	s := newStack(t, stackOptions{s3: true, postgres: true})
	if _, ok := s.blobs.(*blob.S3); !ok {
		t.Fatalf("blobs are %T", s.blobs)
	}
	if _, ok := s.catalog.(*catalog.Postgres); !ok {
		t.Fatalf("catalog is %T", s.catalog)
	}
	ctx := context.Background()
	if code, out := s.get("", "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz on Postgres and S3: %d %v", code, out)
	}
	clip := testenv.SharedVideo(t, "car-detection.mp4")
	other := testenv.SharedVideo(t, "one-by-one-person-detection.mp4")
	ids := map[string]string{}
	for _, p := range []string{clip, other} {
		code, body := s.upload(appKey, lessonForm(p))
		if code != http.StatusAccepted {
			t.Fatalf("upload %s: %d %v", p, code, body)
		}
		ids[p] = body["id"].(string)
	}
	for p, id := range ids {
		if v := s.waitState(id, 5*time.Minute); v["state"] != "published" {
			t.Fatalf("%s: state %v: %v; stages %v", p, v["state"], v["error"], v["stages"])
		}
	}
	id := ids[clip]
	// The stages read each upload from the worker's source cache: one copy
	// of each is there.
	var want int64
	for p := range ids {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want += fi.Size()
	}
	if got := s.sourceCache.Size(); got != want {
		t.Errorf("source cache holds %d bytes, want both uploads' %d", got, want)
	}

	// The bucket holds the upload, byte for byte, its frames and the
	// rendition; the watermark pass's work objects are gone.
	vd, err := s.catalog.GetVideo(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	up, err := blob.GetBytes(ctx, s.blobs, vd.BlobKey, 64<<20)
	if err != nil || !bytes.Equal(up, src) {
		t.Fatalf("upload object %s: %d bytes (source %d), %v", vd.BlobKey, len(up), len(src), err)
	}
	keys := s.blobKeys("")
	if !slices.Contains(keys, activities.RenditionKey(id)) || len(s.blobKeys("frames/"+id+"/")) == 0 {
		t.Fatalf("objects %v: want the rendition and frames of %s", keys, id)
	}
	if work := s.blobKeys("renditions/" + id + "/work/"); len(work) != 0 {
		t.Fatalf("the watermark pass left its work objects: %v", work)
	}

	// The API serves the rendition whole and by range, and detection on it
	// finds the video.
	code, rendition := s.getRaw(appKey, "/v1/videos/"+id+"/rendition")
	if code != http.StatusOK || len(rendition) < 10_000 {
		t.Fatalf("GET rendition: %d, %d bytes", code, len(rendition))
	}
	rec, err := s.catalog.Rendition(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(rendition); hex.EncodeToString(h[:]) != rec.SHA256 || int64(len(rendition)) != rec.SizeBytes {
		t.Fatalf("rendition bytes do not match the record %+v", rec)
	}
	req, _ := http.NewRequest(http.MethodGet, s.api.URL+"/v1/videos/"+id+"/rendition", nil)
	req.Header.Set("Authorization", "Bearer "+appKey)
	req.Header.Set("Range", "bytes=5000-5999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var part bytes.Buffer
	part.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part.Bytes(), rendition[5000:6000]) ||
		resp.Header.Get("Content-Range") != "bytes 5000-5999/"+strconv.Itoa(len(rendition)) {
		t.Fatalf("range: %d, %d bytes, Content-Range %q", resp.StatusCode, part.Len(), resp.Header.Get("Content-Range"))
	}
	code, det := s.detect(reviewerKey, "leaked.mp4", rendition)
	video, _ := det["video"].(map[string]any)
	if code != http.StatusOK || det["found"] != true || det["payload"] != rec.Payload.String() || video == nil || video["id"] != id {
		t.Fatalf("detect on the rendition: %d %v, want payload %s of video %s", code, det, rec.Payload, id)
	}

	// A completed lesson is not recommended again; a newcomer gets both.
	body := fmt.Sprintf(`{"events":[{"event_id":"e1","lesson_id":%q,"type":"complete","at":%q,"watch_seconds":10}]}`,
		id, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
	req, _ = http.NewRequest(http.MethodPost, s.api.URL+"/v1/users/viewer-1/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if code, out := s.do(appKey, req); code != http.StatusOK || out["items"].([]any)[0].(map[string]any)["status"].(float64) != 201 {
		t.Fatalf("events: %d %v", code, out)
	}
	recs := func(user string) []string {
		code, out := s.get(appKey, "/v1/users/"+user+"/recommendations?limit=10")
		if code != http.StatusOK {
			t.Fatalf("recommendations for %s: %d %v", user, code, out)
		}
		var got []string
		for _, it := range out["items"].([]any) {
			got = append(got, it.(map[string]any)["lesson_id"].(string))
		}
		return got
	}
	if got := recs("viewer-1"); !slices.Equal(got, []string{ids[other]}) {
		t.Errorf("viewer-1 (completed %s): %v, want only %s", id, got, ids[other])
	}
	if got := recs("newcomer"); len(got) != 2 {
		t.Errorf("newcomer: %v, want both lessons", got)
	}
}
