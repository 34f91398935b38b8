package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/leak"
	"github.com/lessonflow/lessonflow/media"
)

// Detection defaults, used when the Server's fields are zero.
const (
	DefaultDetectMaxBytes = 256 << 20
	DefaultDetectTimeout  = 60 * time.Second
)

// getRendition streams a published video's watermarked rendition, with
// Range and conditional requests (http.ServeContent). Only published videos
// are served: a blocked, rejected or unpublished video answers 404, one
// still in the pipeline 409.
func (s *Server) getRendition(w http.ResponseWriter, r *http.Request) {
	v, ok := s.videoFor(w, r)
	if !ok {
		return
	}
	id := v.ID
	switch v.State {
	case catalog.StatePublished:
	case catalog.StateProcessing, catalog.StateApproved:
		writeError(w, http.StatusConflict, "not_ready",
			fmt.Sprintf("video %s is %s: its rendition is served once it is published", id, v.State))
		return
	default:
		writeError(w, http.StatusNotFound, "not_published", fmt.Sprintf("video %s is not published (state %s)", id, v.State))
		return
	}
	reg, ok := s.Catalog.(catalog.Registry)
	if !ok {
		s.internalError(w, r, fmt.Errorf("catalog %T has no renditions", s.Catalog))
		return
	}
	rend, err := reg.Rendition(r.Context(), id)
	if errors.Is(err, catalog.ErrNoRendition) || errors.Is(err, catalog.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no_rendition", "video "+id+" has no watermarked rendition")
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "video/mp4")
	h.Set("ETag", `"`+rend.SHA256+`"`) // ServeContent answers If-None-Match and If-Range from it
	h.Set("Cache-Control", "private, max-age=3600")
	h.Set("X-Content-Type-Options", "nosniff")
	rc, err := s.Blobs.Get(r.Context(), rend.BlobKey)
	if err != nil {
		s.internalError(w, r, fmt.Errorf("rendition of %s: %w", id, err))
		return
	}
	defer rc.Close()
	if rs, ok := rc.(io.ReadSeeker); ok {
		// Files seek, and S3 objects seek with ranged requests: Range and
		// HEAD are answered without reading the rest of the object.
		http.ServeContent(w, r, "", rend.CreatedAt, rs)
		return
	}
	// A store whose objects cannot seek: the whole object, no ranges.
	h.Set("Content-Length", strconv.FormatInt(rend.SizeBytes, 10))
	h.Set("Last-Modified", rend.CreatedAt.UTC().Format(http.TimeFormat))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, rc)
}

// detectForm is the size of the form beyond the file: boundaries, headers.
const detectFormOverhead = 64 << 10

// detectWatermark answers whose copy an uploaded file (video or image) is.
// The upload is bounded (DetectMaxBytes), the work too: frames are decoded
// downscaled, only the first seconds of a video, under DetectTimeout.
func (s *Server) detectWatermark(w http.ResponseWriter, r *http.Request) {
	if s.WatermarkKeys == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "no watermark key is configured (LESSONFLOW_WATERMARK_KEY)")
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send multipart/form-data with a file field")
		return
	}
	maxBytes := s.DetectMaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultDetectMaxBytes
	}
	timeout := s.DetectTimeout
	if timeout <= 0 {
		timeout = DefaultDetectTimeout
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBytes+detectFormOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", "not a multipart/form-data body: "+err.Error())
		return
	}
	path, err := receiveDetectFile(mr, maxBytes)
	if path != "" {
		defer os.Remove(path)
	}
	if err != nil {
		if errors.Is(err, errTooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the file is larger than the limit of %d bytes", maxBytes))
			return
		}
		s.uploadError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	rep, err := leak.Detect(ctx, *s.WatermarkKeys, path, leak.Options{})
	var inv *media.InvalidError
	switch {
	case errors.As(err, &inv):
		writeError(w, http.StatusUnprocessableEntity, "invalid_media", "file: "+inv.Reason)
		return
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		writeError(w, http.StatusUnprocessableEntity, "too_slow", fmt.Sprintf("detection did not finish within %s; send a shorter or smaller clip", timeout))
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	if err := leak.Lookup(r.Context(), s.Catalog, &rep); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.Logger.Info("watermark detect", "found", rep.Found, "payload", rep.Payload, "frames", rep.Frames, "media", rep.Media,
		"known", rep.Video != nil, "seconds", rep.Seconds)
	writeJSON(w, http.StatusOK, rep)
}

// receiveDetectFile stores the form's one "file" part in a temporary file
// and returns its path (also with an error, for the caller to remove).
func receiveDetectFile(mr *multipart.Reader, maxBytes int64) (path string, err error) {
	err = forEachPart(mr, func(part *multipart.Part) error {
		if part.FormName() != "file" {
			return invalid(truncate(part.FormName(), 40), "unknown form field; expected file")
		}
		if path != "" {
			return invalid("file", "sent twice; send one file")
		}
		if err := checkFilename(rawFilename(part)); err != nil {
			return err
		}
		f, err := os.CreateTemp("", "lessonflow-detect-*")
		if err != nil {
			return err
		}
		path = f.Name()
		n, err := io.Copy(f, &limitedReader{r: part, left: maxBytes})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return bodyError(err)
		}
		if n == 0 {
			return invalid("file", "is empty")
		}
		return nil
	})
	if err != nil {
		return path, err
	}
	if path == "" {
		return path, invalid("file", "is required (multipart field \"file\")")
	}
	return path, nil
}
