package api

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/catalog"
)

// TestDecisionsPaginated: the decision log pages oldest first with limit
// and cursor; bad parameters are 400.
func TestDecisionsPaginated(t *testing.T) {
	cat := testCatalog(t)
	vid := "v" + strings.Repeat("cd", 12)
	other := "v" + strings.Repeat("ef", 12)
	ctx := context.Background()
	for _, id := range []string{vid, other} {
		if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: id, Title: "x", TeacherID: "t-1"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		for _, id := range []string{vid, other} {
			if _, _, err := cat.AppendDecision(ctx, catalog.Decision{VideoID: id, Key: fmt.Sprintf("k%d", i), Actor: "model:m",
				Outcome: "approved", Reason: fmt.Sprintf("r%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	srv := startServer(t, &Server{Catalog: cat, Keys: map[string]string{tAppKey: RoleApp}})
	var reasons []string
	path := "/v1/videos/" + vid + "/decisions?limit=2"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		status, body, _ := callRaw(t, srv, tAppKey, "GET", path, "")
		if status != 200 {
			t.Fatalf("%s: %d %v", path, status, body)
		}
		items := body["items"].([]any)
		if len(items) > 2 {
			t.Fatalf("page of %d over limit 2", len(items))
		}
		for _, it := range items {
			d := it.(map[string]any)
			if d["video_id"] != vid {
				t.Fatalf("another video's decision: %v", d)
			}
			reasons = append(reasons, d["reason"].(string))
		}
		next := body["next_cursor"].(string)
		if next == "" {
			break
		}
		path = "/v1/videos/" + vid + "/decisions?limit=2&cursor=" + url.QueryEscape(next)
	}
	if strings.Join(reasons, ",") != "r0,r1,r2,r3,r4" {
		t.Fatalf("paged log %v", reasons)
	}
	status, body, _ := callRaw(t, srv, tAppKey, "GET", "/v1/videos/"+vid+"/decisions", "")
	if status != 200 || len(body["items"].([]any)) != 5 || body["next_cursor"] != "" {
		t.Fatalf("default page: %d %v", status, body)
	}
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "cursor=%21%21", "cursor=cnwxMg", "page=2"} {
		status, body, _ := callRaw(t, srv, tAppKey, "GET", "/v1/videos/"+vid+"/decisions?"+q, "")
		if status != 400 || errCode(body) != "invalid_query" {
			t.Errorf("?%s: %d %v, want 400 invalid_query", q, status, body)
		}
	}
}
