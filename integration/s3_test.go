package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/internal/testenv"
)

// TestPipelineOnS3 runs an upload through the whole pipeline with its
// objects in an S3 bucket (testenv.S3: versitygw, or the service
// LESSONFLOW_TEST_S3_ENDPOINT names) instead of files: every stage reads
// the upload through a download, the watermark pass stores its segments and
// rendition there, and the API serves the rendition with ranged reads.
func TestPipelineOnS3(t *testing.T) {
	s := newStack(t, stackOptions{s3: true})
	if _, ok := s.blobs.(*blob.S3); !ok {
		t.Fatalf("blobs are %T", s.blobs)
	}
	ctx := context.Background()
	clip := testenv.SharedVideo(t, "car-detection.mp4")
	code, body := s.upload(appKey, lessonForm(clip))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	id := body["id"].(string)
	v := s.waitState(id, 5*time.Minute)
	if v["state"] != "published" {
		t.Fatalf("state %v: %v; stages %v", v["state"], v["error"], v["stages"])
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
	if code != http.StatusOK || det["found"] != true || det["payload"] != rec.Payload.String() {
		t.Fatalf("detect on the rendition: %d %v, want payload %s", code, det, rec.Payload)
	}
}
