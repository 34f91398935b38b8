package api

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recheck"
)

// The reviewer page: static HTML, CSS and JavaScript compiled into the
// binary, so running it needs no build step and no other server.
//
//go:embed web
var webFiles embed.FS

// webETags are the page files' content hashes, so browsers revalidate
// cheaply and never run a stale script after an upgrade.
var webETags = func() map[string]string {
	out := map[string]string{}
	_ = fs.WalkDir(webFiles, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := webFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[strings.TrimPrefix(p, "web/")] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	return out
}()

// webCSP allows nothing but this origin's own files: no inline script or
// style, no framing, evidence images from the API's signed URLs only.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// mountWeb serves the reviewer page at /review/. It is not an API route
// (no key: the page asks for one), so it is outside routes() and OpenAPI.
func (s *Server) mountWeb(mux *http.ServeMux) {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	files := http.StripPrefix("/review/", http.FileServerFS(sub))
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/review/")
		if name == "" {
			name = "index.html"
		}
		h := w.Header()
		h.Set("Content-Security-Policy", webCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// Evidence URLs are credentials: never send them on as a referrer.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if tag, ok := webETags[name]; ok {
			h.Set("ETag", tag)
		}
		files.ServeHTTP(w, r)
	})
	mux.Handle("GET /review/", s.instrument("/review/", page))
	mux.Handle("GET /review", http.RedirectHandler("/review/", http.StatusMovedPermanently))
}

// policyView is a moderation policy as reviewers read it.
type policyView struct {
	Version string `json:"version"`
	// Source says where it came from: active (the policy the pipeline runs),
	// builtin (compiled in) or recheck (a re-check batch's policy).
	Source string `json:"source"`
	Active bool   `json:"active"`
	Text   string `json:"text"`
}

// getReviewPolicy answers the policy an item was flagged under (?version=),
// or the active one: reviewers decide against the rules that applied.
func (s *Server) getReviewPolicy(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "version") {
		return
	}
	version := r.URL.Query().Get("version")
	if len(version) > 200 || strings.IndexFunc(version, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
		writeError(w, http.StatusBadRequest, "invalid_query", "version must be at most 200 printable characters")
		return
	}
	active := s.Policy
	if version == "" || active != nil && version == active.Version {
		if active == nil {
			writeError(w, http.StatusNotFound, "not_found", "this server was started without an active policy")
			return
		}
		s.writePolicy(w, r, active, "active")
		return
	}
	for _, name := range moderation.BuiltinPolicies() {
		if p, err := moderation.LoadPolicy(name); err == nil && p.Version == version {
			s.writePolicy(w, r, p, "builtin")
			return
		}
	}
	if rs := s.rechecks(); rs != nil {
		b, err := rs.RecheckBatchByPolicy(r.Context(), version)
		switch {
		case err == nil:
			text, err := recheck.PolicyText(r.Context(), s.Blobs, recheck.PolicyRef{Key: b.PolicyKey, SHA256: b.PolicySHA256, Version: b.PolicyVersion})
			if err != nil {
				s.internalError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, policyView{Version: b.PolicyVersion, Source: "recheck", Text: string(text)})
			return
		case !errors.Is(err, catalog.ErrNotFound):
			s.internalError(w, r, err)
			return
		}
	}
	writeError(w, http.StatusNotFound, "not_found", "no policy of version "+strconv.Quote(version)+" is known to this server")
}

// writePolicy answers a parsed policy as YAML of its settings (defaults
// filled in: what the pipeline actually applies).
func (s *Server) writePolicy(w http.ResponseWriter, r *http.Request, p *moderation.Policy, source string) {
	text, err := yaml.Marshal(p)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	isActive := s.Policy != nil && s.Policy.Version == p.Version
	writeJSON(w, http.StatusOK, policyView{Version: p.Version, Source: source, Active: isActive, Text: string(text)})
}
