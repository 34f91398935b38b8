package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime/multipart"
	"sort"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/blob"
)

// TestOpenAPIMatchesRoutes keeps the document and the router in step.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	s := &Server{}
	for _, r := range s.routes() {
		served = append(served, r.method+" "+r.path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Fatalf("routes and OpenAPI differ:\nserved:\n%s\ndocumented:\n%s", strings.Join(served, "\n"), strings.Join(documented, "\n"))
	}
	// Every protected route documents the 401 it can answer.
	for _, r := range s.routes() {
		var op struct {
			Responses map[string]json.RawMessage `json:"responses"`
		}
		_ = json.Unmarshal(doc.Paths[r.path][strings.ToLower(r.method)], &op)
		if _, ok := op.Responses["401"]; r.roles != nil && !ok {
			t.Errorf("%s %s: 401 not documented", r.method, r.path)
		}
	}
}

func validFields() map[string]string {
	return map[string]string{"title": "Fractions", "level": "3", "language": "pt-BR", "tags": "Math, fractions,math", "teacher_id": "t_42", "description": "x"}
}

func TestParseMetadata(t *testing.T) {
	m, err := ParseMetadata(validFields())
	if err != nil {
		t.Fatal(err)
	}
	if m.Level != 3 || m.Language != "pt-BR" || strings.Join(m.Tags, "|") != "math|fractions" {
		t.Fatalf("got %+v", m)
	}
	bad := map[string]func(map[string]string){
		"level 0":        func(f map[string]string) { f["level"] = "0" },
		"level 7":        func(f map[string]string) { f["level"] = "7" },
		"level 2.5":      func(f map[string]string) { f["level"] = "2.5" },
		"no title":       func(f map[string]string) { delete(f, "title") },
		"long title":     func(f map[string]string) { f["title"] = strings.Repeat("é", 201) },
		"two-line title": func(f map[string]string) { f["title"] = "a\nb" },
		"control chars":  func(f map[string]string) { f["description"] = "a\x00b" },
		"bad utf8":       func(f map[string]string) { f["title"] = "\xff" },
		"language":       func(f map[string]string) { f["language"] = "EN" },
		"too many tags": func(f map[string]string) {
			f["tags"] = strings.Repeat("a,", 10) + "b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u"
		},
		"long tag":         func(f map[string]string) { f["tags"] = strings.Repeat("t", 41) },
		"teacher slash":    func(f map[string]string) { f["teacher_id"] = "a/b" },
		"no teacher":       func(f map[string]string) { f["teacher_id"] = "" },
		"long desc":        func(f map[string]string) { f["description"] = strings.Repeat("d", 5001) },
		"missing language": func(f map[string]string) { delete(f, "language") },
	}
	for name, mutate := range bad {
		f := validFields()
		mutate(f)
		var ve *ValidationError
		if _, err := ParseMetadata(f); !errors.As(err, &ve) {
			t.Errorf("%s: want a ValidationError, got %v", name, err)
		}
	}
}

func FuzzParseMetadata(f *testing.F) {
	f.Add("Fractions", "3", "en", "a,b", "t1", "")
	f.Add("", "9", "xx-", ",,,", "../x", "\x00")
	f.Add(strings.Repeat("x", 300), "-1", "zh-Hant-TW", "é,ü", "ok", "d")
	f.Fuzz(func(t *testing.T, title, level, lang, tags, teacher, desc string) {
		m, err := ParseMetadata(map[string]string{"title": title, "level": level, "language": lang, "tags": tags, "teacher_id": teacher, "description": desc})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("non-validation error %v", err)
			}
			return
		}
		if m.Level < 1 || m.Level > 6 || m.Title == "" || len([]rune(m.Title)) > maxTitle || len(m.Tags) > maxTags || m.TeacherID == "" {
			t.Fatalf("accepted invalid metadata %+v", m)
		}
	})
}

func newFS(t testing.TB) *blob.FS {
	fs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func multipartBody(fields map[string]string, filename string, file []byte) (string, []byte) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if file != nil {
		w, _ := mw.CreateFormFile("file", filename)
		_, _ = w.Write(file)
	}
	_ = mw.Close()
	return mw.Boundary(), b.Bytes()
}

func TestReceiveUploadStoresAndCleansUp(t *testing.T) {
	ctx := context.Background()
	fs := newFS(t)
	boundary, body := multipartBody(validFields(), "lesson.mp4", []byte("not really a video, the pipeline decides"))
	up, err := receiveUpload(ctx, fs, multipart.NewReader(bytes.NewReader(body), boundary), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if up.file.Size == 0 || len(up.file.SHA256) != 64 || !strings.HasPrefix(up.file.Key, "uploads/") {
		t.Fatalf("stored %+v", up.file)
	}
	// Invalid metadata after the file: the stored file must go.
	fields := validFields()
	fields["level"] = "9"
	boundary, body = multipartBody(fields, "lesson.mp4", []byte("abc"))
	if _, err := receiveUpload(ctx, fs, multipart.NewReader(bytes.NewReader(body), boundary), 1<<20); err == nil {
		t.Fatal("level 9 accepted")
	}
	// Over the limit.
	boundary, body = multipartBody(validFields(), "big.mp4", make([]byte, 2048))
	if _, err := receiveUpload(ctx, fs, multipart.NewReader(bytes.NewReader(body), boundary), 1024); !errors.Is(err, errTooLarge) {
		t.Fatalf("want errTooLarge, got %v", err)
	}
	// Exactly at the limit is fine.
	boundary, body = multipartBody(validFields(), "exact.mp4", make([]byte, 1024))
	if _, err := receiveUpload(ctx, fs, multipart.NewReader(bytes.NewReader(body), boundary), 1024); err != nil {
		t.Fatalf("exact limit: %v", err)
	}
	infos, _ := fs.List(ctx, "uploads/")
	if len(infos) != 2 {
		t.Fatalf("want the two good uploads stored, have %v", infos)
	}
}

// FuzzUploadForm feeds arbitrary bodies to the multipart reader: no panic, and
// a rejected body leaves no stored file behind.
func FuzzUploadForm(f *testing.F) {
	boundary, body := multipartBody(validFields(), "a.mp4", []byte("xyz"))
	f.Add(boundary, body)
	_, body2 := multipartBody(map[string]string{"title": "t", "bogus": "1"}, "../a", nil)
	f.Add(boundary, body2)
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		if boundary == "" || len(boundary) > 70 {
			return
		}
		fs := newFS(t)
		up, err := receiveUpload(context.Background(), fs, multipart.NewReader(bytes.NewReader(body), boundary), 4096)
		infos, _ := fs.List(context.Background(), "")
		if err != nil {
			if len(infos) != 0 {
				t.Fatalf("rejected body (%v) left %v", err, infos)
			}
			return
		}
		if len(infos) != 1 || infos[0].Key != up.file.Key || up.file.Size == 0 {
			t.Fatalf("accepted upload %+v but store has %v", up, infos)
		}
	})
}
