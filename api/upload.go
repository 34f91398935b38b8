package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/workflows"
)

// Metadata is what an uploader says about a lesson.
type Metadata struct {
	Title       string
	Description string
	Level       int
	Language    string
	Tags        []string
	TeacherID   string
}

// Bounds of metadata fields.
const (
	maxTitle       = 200
	maxDescription = 5000
	maxTags        = 20
	maxTag         = 40
	maxFieldBytes  = 16 << 10 // any non-file form field
	maxFilename    = 255
)

var (
	languageRe = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
	teacherRe  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// ValidationError is a client mistake in one field: answered 400.
type ValidationError struct {
	Field, Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// metadataFields are the form fields besides `file`.
var metadataFields = []string{"title", "description", "level", "language", "tags", "teacher_id"}

// ParseMetadata validates the upload form's metadata fields.
func ParseMetadata(fields map[string]string) (Metadata, error) {
	var m Metadata
	for name, v := range fields {
		if !utf8.ValidString(v) {
			return m, invalid(name, "is not valid UTF-8")
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f }) {
			return m, invalid(name, "contains control characters")
		}
	}
	m.Title = strings.TrimSpace(fields["title"])
	switch n := utf8.RuneCountInString(m.Title); {
	case n == 0:
		return m, invalid("title", "is required")
	case n > maxTitle:
		return m, invalid("title", "is %d characters long; at most %d allowed", n, maxTitle)
	case strings.ContainsAny(m.Title, "\n\t"):
		return m, invalid("title", "must be one line")
	}
	m.Description = strings.TrimSpace(fields["description"])
	if n := utf8.RuneCountInString(m.Description); n > maxDescription {
		return m, invalid("description", "is %d characters long; at most %d allowed", n, maxDescription)
	}
	lv := strings.TrimSpace(fields["level"])
	level, err := strconv.Atoi(lv)
	if lv == "" {
		return m, invalid("level", "is required (1-6)")
	}
	if err != nil || level < 1 || level > 6 {
		return m, invalid("level", "must be a whole number from 1 to 6, got %q", truncate(lv, 20))
	}
	m.Level = level
	m.Language = strings.TrimSpace(fields["language"])
	if m.Language == "" {
		return m, invalid("language", "is required (a BCP 47 tag such as en or pt-BR)")
	}
	if len(m.Language) > 35 || !languageRe.MatchString(m.Language) {
		return m, invalid("language", "must be a BCP 47 tag such as en or pt-BR, got %q", truncate(m.Language, 40))
	}
	if raw := strings.TrimSpace(fields["tags"]); raw != "" {
		seen := map[string]bool{}
		for _, t := range strings.Split(raw, ",") {
			t = strings.ToLower(strings.TrimSpace(t))
			if t == "" {
				continue
			}
			if utf8.RuneCountInString(t) > maxTag || strings.ContainsAny(t, "\n\t") {
				return m, invalid("tags", "tag %q is longer than %d characters or not one line", truncate(t, 50), maxTag)
			}
			if !seen[t] {
				seen[t] = true
				m.Tags = append(m.Tags, t)
			}
		}
		if len(m.Tags) > maxTags {
			return m, invalid("tags", "%d tags; at most %d allowed", len(m.Tags), maxTags)
		}
	}
	m.TeacherID = strings.TrimSpace(fields["teacher_id"])
	if m.TeacherID == "" {
		return m, invalid("teacher_id", "is required")
	}
	if !teacherRe.MatchString(m.TeacherID) {
		return m, invalid("teacher_id", "must be 1-64 characters of letters, digits, '.', '_' or '-'")
	}
	return m, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// errTooLarge is returned by limitedReader past the upload limit.
var errTooLarge = errors.New("upload is larger than the limit")

type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte more than allowed tells "exactly the limit" from "over it".
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// upload is a received form: metadata and the stored file.
type upload struct {
	meta Metadata
	file blob.Info
}

// receiveUpload streams the multipart form: the file goes straight to blob
// storage (hashed on the way), fields are read with small limits. On any
// error the stored file is removed, so a failed upload leaves nothing.
func receiveUpload(ctx context.Context, store blob.Store, mr *multipart.Reader, maxBytes int64) (up upload, err error) {
	fields := map[string]string{}
	stored := false
	defer func() {
		if err != nil && stored {
			_ = store.Delete(context.WithoutCancel(ctx), up.file.Key)
		}
	}()
	err = forEachPart(mr, func(part *multipart.Part) error {
		name := part.FormName()
		switch {
		case name == "file":
			if stored {
				return invalid("file", "sent twice; send one file per upload")
			}
			if err := checkFilename(rawFilename(part)); err != nil {
				return err
			}
			key := uploadKey(time.Now())
			info, err := store.Put(ctx, key, &limitedReader{r: part, left: maxBytes})
			if err != nil {
				_ = store.Delete(context.WithoutCancel(ctx), key)
				if errors.Is(err, errTooLarge) {
					return errTooLarge
				}
				return bodyError(err)
			}
			up.file, stored = info, true
			if info.Size == 0 {
				return invalid("file", "is empty")
			}
		case contains(metadataFields, name):
			if _, dup := fields[name]; dup {
				return invalid(name, "sent twice")
			}
			b, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
			if err != nil {
				return bodyError(err)
			}
			if len(b) > maxFieldBytes {
				return invalid(name, "is larger than %d bytes", maxFieldBytes)
			}
			fields[name] = string(b)
		default:
			return invalid(truncate(name, 40), "unknown form field; expected file, %s", strings.Join(metadataFields, ", "))
		}
		return nil
	})
	if err != nil {
		return up, err
	}
	if !stored {
		return up, invalid("file", "is required (multipart field \"file\")")
	}
	up.meta, err = ParseMetadata(fields)
	return up, err
}

// forEachPart calls fn on each part of a multipart body in turn, stopping
// at fn's first error; a broken body is a bodyError.
func forEachPart(mr *multipart.Reader, fn func(*multipart.Part) error) error {
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return bodyError(err)
		}
		if err := fn(part); err != nil {
			return err
		}
	}
}

// bodyError tells a broken or oversized request body from a server fault.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || errors.Is(err, errTooLarge) {
		return errTooLarge
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return invalid("body", "is not a well-formed multipart/form-data body: %v", err)
}

func checkFilename(name string) error {
	switch {
	case len(name) > maxFilename:
		return invalid("file", "filename is longer than %d bytes", maxFilename)
	case strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." || strings.Contains(name, ".."):
		return invalid("file", "filename %q must be a plain name without path separators or '..'", truncate(name, 60))
	case !utf8.ValidString(name):
		return invalid("file", "filename is not valid UTF-8")
	}
	return nil
}

// rawFilename is the filename as sent: Part.FileName already strips
// directories, which would hide a traversal attempt we want to refuse.
func rawFilename(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return ""
	}
	return params["filename"]
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// VideoIDFor derives a video's id from its content hash.
func VideoIDFor(sha256hex string) string { return "v" + sha256hex[:24] }

// createdBody answers an upload.
type createdBody struct {
	ID        string `json:"id"`
	StatusURL string `json:"status_url"`
	State     string `json:"state"`
}

func (s *Server) createVideo(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send multipart/form-data with a file field and metadata fields")
		return
	}
	// Form fields add a little beyond the file itself.
	r.Body = http.MaxBytesReader(w, r.Body, s.MaxUploadBytes+int64(len(metadataFields)+4)*maxFieldBytes)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", "not a multipart/form-data body: "+err.Error())
		return
	}
	up, err := receiveUpload(r.Context(), s.Blobs, mr, s.MaxUploadBytes)
	if err != nil {
		s.uploadError(w, r, err)
		return
	}
	id := VideoIDFor(up.file.SHA256)
	v, created, err := s.Catalog.CreateVideo(r.Context(), catalog.Video{
		ID: id, SHA256: up.file.SHA256, Title: up.meta.Title, Description: up.meta.Description,
		Level: up.meta.Level, Language: up.meta.Language, Tags: up.meta.Tags, TeacherID: up.meta.TeacherID,
		BlobKey: up.file.Key, SizeBytes: up.file.Size,
	})
	if err != nil {
		_ = s.Blobs.Delete(context.WithoutCancel(r.Context()), up.file.Key)
		s.internalError(w, r, fmt.Errorf("create video %s: %w", id, err))
		return
	}
	body := createdBody{ID: id, StatusURL: "/v1/videos/" + id, State: string(v.State)}
	if !created {
		// Same bytes again: keep the first copy. If the first upload's
		// workflow never started (a crash in between), start it now.
		_ = s.Blobs.Delete(context.WithoutCancel(r.Context()), up.file.Key)
		if v.State == catalog.StateProcessing {
			if err := s.startPipeline(r.Context(), v); err != nil {
				s.internalError(w, r, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, body)
		return
	}
	if err := s.startPipeline(r.Context(), v); err != nil {
		// Roll back so the client's retry starts clean.
		ctx := context.WithoutCancel(r.Context())
		if derr := s.Catalog.DeleteVideo(ctx, id); derr == nil {
			_ = s.Blobs.Delete(ctx, up.file.Key)
		}
		s.Logger.Error("start pipeline", "video", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the workflow service is unavailable; retry the upload")
		return
	}
	w.Header().Set("Location", body.StatusURL)
	writeJSON(w, http.StatusAccepted, body)
}

// startPipeline starts the video's workflow unless one ran or runs already.
func (s *Server) startPipeline(ctx context.Context, v catalog.Video) error {
	err := s.startPipelineRun(ctx, v, enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE, enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) { // a retried upload whose pipeline already ran
		return nil
	}
	return err
}

// startPipelineRun starts the video's workflow. reuse says whether a closed
// run of the same id may be followed by a new one, conflict what an open run
// means (USE_EXISTING: it is the one; FAIL: an error); when the run may not
// start, the error is a *serviceerror.WorkflowExecutionAlreadyStarted.
func (s *Server) startPipelineRun(ctx context.Context, v catalog.Video, reuse enumspb.WorkflowIdReusePolicy, conflict enumspb.WorkflowIdConflictPolicy) error {
	_, err := s.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(v.ID),
		TaskQueue:                s.TaskQueue,
		WorkflowIDReusePolicy:    reuse,
		WorkflowIDConflictPolicy: conflict,
	}, s.WorkflowName, workflows.VideoInput{VideoID: v.ID, BlobKey: v.BlobKey, SHA256: v.SHA256})
	if err != nil {
		return fmt.Errorf("start pipeline of %s: %w", v.ID, err)
	}
	return nil
}

func (s *Server) uploadError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *ValidationError
	switch {
	case errors.Is(err, errTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the upload is larger than the limit of %d bytes", s.MaxUploadBytes))
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, "invalid_"+fieldCode(ve.Field), ve.Error())
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusBadRequest, "aborted", "the upload was aborted")
	default:
		s.internalError(w, r, err)
	}
}

func fieldCode(field string) string {
	if contains(metadataFields, field) || field == "file" || field == "body" {
		return field
	}
	return "field"
}
