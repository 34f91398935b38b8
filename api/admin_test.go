package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recheck"
)

const (
	adAppKey      = "app-key-0123456789abcdef"
	adReviewerKey = "reviewer-key-0123456789abcdef"
	adAdminKey    = "admin-key-0123456789abcdef"
)

// adminServer is an API without Temporal: every request here is answered
// before a workflow would be started or asked.
func adminServer(t *testing.T) (*httptest.Server, *Server, *catalog.SQLite) {
	t.Helper()
	cat := testCatalog(t)
	active, err := moderation.LoadPolicy("default")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Catalog: cat, Blobs: newFS(t), TaskQueue: "q", WorkflowName: "w", MaxUploadBytes: 1 << 20,
		Keys: map[string]string{adAppKey: RoleApp, adReviewerKey: RoleReviewer, adAdminKey: RoleAdmin}, Policy: active}
	return startServer(t, s), s, cat
}

func TestStartRecheckValidates(t *testing.T) {
	srv, _, _ := adminServer(t)
	text, err := os.ReadFile("../moderation/policies/test-block-drawing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yamlBody := func(extra string) string {
		b, _ := json.Marshal(string(text))
		return `{"policy_yaml":` + string(b) + extra + `}`
	}
	otherModel := strings.Replace(string(text), "model: nsfw_mobilenet_v2_224", "model: some_other_model", 1)
	otherModelBody, _ := json.Marshal(map[string]string{"policy_yaml": otherModel})
	wrongLabels := strings.Replace(string(text), "labels: [Drawing, Hentai, Neutral, Porn, Sexy]", "labels: [Hentai, Drawing, Neutral, Porn, Sexy]", 1)
	wrongLabelsBody, _ := json.Marshal(map[string]string{"policy_yaml": wrongLabels})
	badYAML, _ := json.Marshal(map[string]string{"policy_yaml": strings.Replace(string(text), "version:", "versoin:", 1)})
	cases := []struct {
		name, key, body string
		code            int
		errCode         string
	}{
		{"no key", "", `{"policy":"default"}`, 401, "unauthenticated"},
		{"reviewer", adReviewerKey, `{"policy":"default"}`, 403, "forbidden"},
		{"app", adAppKey, `{"policy":"default"}`, 403, "forbidden"},
		{"empty body", adAdminKey, ``, 400, "invalid_body"},
		{"not an object", adAdminKey, `[1]`, 400, "invalid_body"},
		{"unknown field", adAdminKey, `{"policy":"default","dry_run":true}`, 400, "invalid_body"},
		{"trailing data", adAdminKey, `{"policy":"default"} {}`, 400, "invalid_body"},
		{"no policy", adAdminKey, `{}`, 400, "invalid_policy"},
		{"both", adAdminKey, `{"policy":"default","policy_yaml":"version: x"}`, 400, "invalid_policy"},
		{"unknown built-in", adAdminKey, `{"policy":"no-such-policy"}`, 400, "invalid_policy"},
		{"path not yaml", adAdminKey, `{"policy":"/etc/passwd"}`, 400, "invalid_policy"},
		{"missing yaml file", adAdminKey, `{"policy":"/nonexistent/p.yaml"}`, 400, "invalid_policy"},
		{"typo in policy", adAdminKey, string(badYAML), 400, "invalid_policy"},
		{"other model", adAdminKey, string(otherModelBody), 400, "invalid_policy"},
		{"wrong label order", adAdminKey, string(wrongLabelsBody), 400, "invalid_policy"},
		{"bad state", adAdminKey, yamlBody(`,"states":["processing"]`), 400, "invalid_states"},
		{"page size", adAdminKey, yamlBody(`,"page_size":1000`), 400, "invalid_page_size"},
		{"run size under page size", adAdminKey, yamlBody(`,"page_size":10,"run_size":5`), 400, "invalid_run_size"},
	}
	for _, c := range cases {
		code, body := call(t, srv, c.key, "POST", "/v1/admin/rechecks", c.body)
		got, _ := body["error"].(map[string]any)
		if code != c.code || got == nil || got["code"] != c.errCode {
			t.Errorf("%s: %d %v, want %d %s", c.name, code, body, c.code, c.errCode)
		}
	}
	// A non-JSON content type and an oversized body.
	req, _ := http.NewRequest("POST", srv.URL+"/v1/admin/rechecks", strings.NewReader("policy=default"))
	req.Header.Set("Authorization", "Bearer "+adAdminKey)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form body: %v %v, want 415", resp.StatusCode, err)
	}
	big := `{"policy_yaml":"` + strings.Repeat("#", maxRecheckBody) + `"}`
	if code, _ := call(t, srv, adAdminKey, "POST", "/v1/admin/rechecks", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", code)
	}
}

func TestGetRecheckNotFound(t *testing.T) {
	srv, _, _ := adminServer(t)
	for _, p := range []string{"/v1/admin/rechecks/nope", "/v1/admin/rechecks/rc..%2F", "/v1/admin/rechecks/nope/results"} {
		if code, body := call(t, srv, adAdminKey, "GET", p, ""); code != 404 {
			t.Errorf("GET %s: %d %v, want 404", p, code, body)
		}
	}
	if code, _ := call(t, srv, adReviewerKey, "GET", "/v1/admin/rechecks/"+recheck.NewBatchID(), ""); code != 403 {
		t.Errorf("reviewer reading a batch: %d, want 403", code)
	}
}

func TestRecheckResultsList(t *testing.T) {
	srv, s, cat := adminServer(t)
	ctx := context.Background()
	id := recheck.NewBatchID()
	ref, _, err := recheck.StorePolicy(ctx, s.Blobs, testenv.ReadFile(t, "../moderation/policies/test-block-drawing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cat.CreateRecheckBatch(ctx, catalog.RecheckBatch{ID: id, PolicyVersion: ref.Version, PolicySHA256: ref.SHA256, PolicyKey: ref.Key}); err != nil {
		t.Fatal(err)
	}
	for i, vid := range []string{"v000000000000000000000001", "v000000000000000000000002", "v000000000000000000000003"} {
		if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: vid}); err != nil {
			t.Fatal(err)
		}
		r := catalog.RecheckResult{BatchID: id, VideoID: vid, VideoState: catalog.StateApproved, OldOutcome: "approved",
			NewOutcome: "approved", Frames: catalog.FramesStored}
		if i == 1 {
			r.NewOutcome, r.Changed = "blocked", true
		}
		if _, _, err := cat.RecordRecheckResult(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	code, body := call(t, srv, adAdminKey, "GET", "/v1/admin/rechecks/"+id+"/results?limit=2", "")
	items, _ := body["items"].([]any)
	if code != 200 || len(items) != 2 || body["next_cursor"] == "" {
		t.Fatalf("first page: %d %v", code, body)
	}
	first := items[0].(map[string]any)
	if segs, ok := first["segments"].([]any); !ok || len(segs) != 0 {
		t.Errorf("segments %v, want []", first["segments"])
	}
	code, body = call(t, srv, adAdminKey, "GET", "/v1/admin/rechecks/"+id+"/results?limit=2&cursor="+body["next_cursor"].(string), "")
	if items, _ := body["items"].([]any); code != 200 || len(items) != 1 || body["next_cursor"] != "" {
		t.Fatalf("second page: %d %v", code, body)
	}
	code, body = call(t, srv, adAdminKey, "GET", "/v1/admin/rechecks/"+id+"/results?changed=true", "")
	if items, _ := body["items"].([]any); code != 200 || len(items) != 1 || items[0].(map[string]any)["new_outcome"] != "blocked" {
		t.Fatalf("changed only: %d %v", code, body)
	}
	for _, q := range []string{"?changed=yes", "?limit=0", "?limit=x", "?cursor=zzz", "?sort=asc"} {
		if code, body := call(t, srv, adAdminKey, "GET", "/v1/admin/rechecks/"+id+"/results"+q, ""); code != 400 {
			t.Errorf("%s: %d %v, want 400", q, code, body)
		}
	}
	if code, _ := call(t, srv, adAdminKey, "GET", "/v1/admin/rechecks/"+recheck.NewBatchID()+"/results", ""); code != 404 {
		t.Errorf("unknown batch results: %d, want 404", code)
	}
}

func TestReviewPolicy(t *testing.T) {
	srv, s, cat := adminServer(t)
	code, body := call(t, srv, adReviewerKey, "GET", "/v1/review/policy", "")
	if code != 200 || body["version"] != s.Policy.Version || body["active"] != true || body["source"] != "active" {
		t.Fatalf("active policy: %d %v", code, body)
	}
	// The text is the policy the pipeline applies: it parses back to it.
	back, err := moderation.ParsePolicy([]byte(body["text"].(string)))
	if err != nil || back.Version != s.Policy.Version || back.Sampling != s.Policy.Sampling || len(back.Signals) != len(s.Policy.Signals) {
		t.Fatalf("policy text does not parse back: %v", err)
	}
	drawing, _ := moderation.LoadPolicy("test-block-drawing")
	code, body = call(t, srv, adReviewerKey, "GET", "/v1/review/policy?version="+drawing.Version, "")
	if code != 200 || body["source"] != "builtin" || body["active"] != false {
		t.Fatalf("built-in by version: %d %v", code, body)
	}
	// A re-check batch's own policy, by its version, as it was sent.
	custom := strings.Replace(string(testenv.ReadFile(t, "../moderation/policies/test-block-drawing.yaml")), drawing.Version, "custom/7", 1)
	ctx := context.Background()
	ref, _, err := recheck.StorePolicy(ctx, s.Blobs, []byte(custom))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cat.CreateRecheckBatch(ctx, catalog.RecheckBatch{ID: recheck.NewBatchID(), PolicyVersion: ref.Version, PolicySHA256: ref.SHA256, PolicyKey: ref.Key}); err != nil {
		t.Fatal(err)
	}
	code, body = call(t, srv, adReviewerKey, "GET", "/v1/review/policy?version=custom/7", "")
	if code != 200 || body["source"] != "recheck" || body["text"] != custom {
		t.Fatalf("re-check policy: %d %v", code, body)
	}
	for q, want := range map[string]int{"?version=nope/1": 404, "?v=1": 400, "?version=" + strings.Repeat("x", 201): 400, "?version=%00": 400} {
		if code, body := call(t, srv, adReviewerKey, "GET", "/v1/review/policy"+q, ""); code != want {
			t.Errorf("%s: %d %v, want %d", q, code, body, want)
		}
	}
	if code, _ := call(t, srv, adAppKey, "GET", "/v1/review/policy", ""); code != 403 {
		t.Errorf("app key: %d, want 403", code)
	}
	s.Policy = nil
	if code, _ := call(t, srv, adReviewerKey, "GET", "/v1/review/policy", ""); code != 404 {
		t.Errorf("no active policy: %d, want 404", code)
	}
}

func TestPolicySourceRoundTrips(t *testing.T) {
	for _, name := range moderation.BuiltinPolicies() {
		text, code, msg := policySource(name)
		if code != 0 {
			t.Fatalf("%s: %d %s", name, code, msg)
		}
		p, err := moderation.ParsePolicy(text)
		want, _ := moderation.LoadPolicy(name)
		if err != nil || p.Version != want.Version || p.Sampling != want.Sampling || p.Aggregation != want.Aggregation {
			t.Fatalf("%s: built-in written as YAML does not parse back: %v", name, err)
		}
		var generic map[string]any
		if err := yaml.Unmarshal(text, &generic); err != nil || generic["signals"] == nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestReviewerPageServed(t *testing.T) {
	srv, _, _ := adminServer(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL + "/review")
	if err != nil || resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/review/" {
		t.Fatalf("/review: %v %v", resp.StatusCode, err)
	}
	for path, want := range map[string]string{"/review/": "text/html", "/review/app.js": "javascript", "/review/app.css": "text/css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || !strings.Contains(h.Get("Content-Type"), want) || len(b) == 0 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, h.Get("Content-Type"))
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") || h.Get("Referrer-Policy") != "no-referrer" ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("ETag") == "" {
			t.Fatalf("%s: security headers %v", path, h)
		}
		// Revalidation is cheap.
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("If-None-Match", h.Get("ETag"))
		again, err := http.DefaultClient.Do(req)
		if err != nil || again.StatusCode != http.StatusNotModified {
			t.Fatalf("%s with If-None-Match: %v %v", path, again.StatusCode, err)
		}
		again.Body.Close()
	}
	// The page never puts API data into HTML.
	js := string(testenv.ReadFile(t, "web/app.js"))
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	if resp, _ := http.Get(srv.URL + "/review/nope.js"); resp.StatusCode != 404 {
		t.Errorf("unknown page file: %d", resp.StatusCode)
	}
}
