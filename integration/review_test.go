package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/api"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/webhook"
)

const (
	reviewerKey2 = "reviewer2-key-0123456789abcdef"
	reviewerKey3 = "reviewer3-key-0123456789abcdef"
	hookSecret   = "webhook-secret-0123456789"
)

// hookReceiver is a customer's webhook endpoint: it verifies every
// signature and keeps the events it accepted.
type hookReceiver struct {
	mu       sync.Mutex
	events   []webhook.Event
	rejected int
	srv      *httptest.Server
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := webhook.Verify([]byte(hookSecret), r.Header.Get(webhook.HeaderSignature), body, time.Now(), webhook.DefaultTolerance); err != nil {
			h.rejected++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.events = append(h.events, ev)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) sender() *webhook.Sender {
	return &webhook.Sender{URL: h.srv.URL, Secret: []byte(hookSecret)}
}

// wait returns the first accepted event matching ok.
func (h *hookReceiver) wait(t *testing.T, what string, ok func(webhook.Event) bool) webhook.Event {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		for _, ev := range h.events {
			if ok(ev) {
				h.mu.Unlock()
				return ev
			}
		}
		h.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no webhook %s; got %+v, %d rejected", what, h.events, h.rejected)
	return webhook.Event{}
}

func reviewStack(t *testing.T, policy string, rs activities.ReviewSettings) (*stack, *hookReceiver) {
	hook := newHookReceiver(t)
	s := newStack(t, stackOptions{policy: policy, review: rs, webhook: hook.sender(),
		extraKeys: map[string]string{reviewerKey2: api.RoleReviewer, reviewerKey3: api.RoleReviewer}})
	return s, hook
}

func (s *stack) post(key, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest("POST", s.api.URL+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return s.do(key, req)
}

// waitItem polls the queue for an item of the video that satisfies ok.
func (s *stack) waitItem(videoID, what string, ok func(map[string]any) bool) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last any
	for time.Now().Before(deadline) {
		code, body := s.get(reviewerKey, "/v1/review/items?video_id="+videoID)
		if code != http.StatusOK {
			s.t.Fatalf("list items: %d %v", code, body)
		}
		items, _ := body["items"].([]any)
		last = items
		for _, it := range items {
			if m := it.(map[string]any); ok(m) {
				return m
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	s.t.Fatalf("no review item of %s %s; last %v", videoID, what, last)
	return nil
}

// waitVideo polls until the video reaches state.
func (s *stack) waitVideo(id, state string, timeout time.Duration) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, v := s.get(adminKey, "/v1/videos/"+id)
		if v["state"] == state {
			return v
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("video %s is %v (%v), want %s; stages %v", id, v["state"], v["error"], state, v["stages"])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func uploadClip(s *stack, name string) string {
	s.t.Helper()
	code, body := s.upload(appKey, lessonForm(testenv.SharedVideo(s.t, name)))
	if code != http.StatusAccepted {
		s.t.Fatalf("upload %s: %d %v", name, code, body)
	}
	return body["id"].(string)
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func kindState(kind, state string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["kind"] == kind && m["state"] == state }
}

func decisions(s *stack, id string) []map[string]any {
	s.t.Helper()
	code, body := s.get(appKey, "/v1/videos/"+id+"/decisions")
	if code != http.StatusOK {
		s.t.Fatalf("decisions: %d %v", code, body)
	}
	var out []map[string]any
	for _, d := range body["items"].([]any) {
		out = append(out, d.(map[string]any))
	}
	return out
}

// TestReviewClaimLeaseDecide: an animated clip goes to review on real model
// scores; a claim's lease keeps others out and expires back to the queue; a
// non-holder's and a stale decision are refused; an approval runs the
// remaining stages and publishes; a second decision is refused.
func TestReviewClaimLeaseDecide(t *testing.T) {
	s, hook := reviewStack(t, "test-review-animation", activities.ReviewSettings{Lease: 4 * time.Second, Deadline: time.Hour})
	id := uploadClip(s, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	s.waitVideo(id, "needs_review", 2*time.Minute)
	it := s.waitItem(id, "pending", kindState("model", "pending"))
	itemPath := "/v1/review/items/" + it["id"].(string)

	segs := it["evidence"].(map[string]any)["segments"].([]any)
	if len(segs) == 0 {
		t.Fatalf("no flagged segments in the evidence: %v", it["evidence"])
	}
	seg := segs[0].(map[string]any)
	if seg["signal"] != "neutral" || seg["thumbnail_url"] == nil {
		t.Fatalf("segment %v", seg)
	}
	req, _ := http.NewRequest("GET", s.api.URL+seg["thumbnail_url"].(string), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("blurred thumbnail: %v %v", resp, err)
	}
	resp.Body.Close()

	code, claimed := s.post(reviewerKey, itemPath+"/claim", nil)
	if code != 200 || claimed["state"] != "claimed" || claimed["lease_expires_at"] == nil {
		t.Fatalf("claim: %d %v", code, claimed)
	}
	if code, body := s.post(reviewerKey2, itemPath+"/claim", nil); code != 409 || errorCode(body) != "claimed" {
		t.Fatalf("second claim: %d %v", code, body)
	}
	if code, body := s.post(reviewerKey2, itemPath+"/decision", map[string]any{"decision": "approve"}); code != 409 || errorCode(body) != "not_lease_holder" {
		t.Fatalf("decision by a non-holder: %d %v", code, body)
	}
	stale := claimed["version"].(float64) - 1
	if code, body := s.post(reviewerKey, itemPath+"/decision", map[string]any{"decision": "approve", "version": stale}); code != 409 || errorCode(body) != "stale_version" {
		t.Fatalf("stale decision: %d %v", code, body)
	}
	if code, body := s.post(reviewerKey, itemPath+"/decision", map[string]any{"decision": "block", "reason_code": "x"}); code != 400 {
		t.Fatalf("block without reason: %d %v", code, body)
	}
	// The lease runs out: the item is back in the queue, for anyone.
	s.waitItem(id, "back to pending", kindState("model", "pending"))
	if code, body := s.post(reviewerKey, itemPath+"/decision", map[string]any{"decision": "approve"}); code != 409 {
		t.Fatalf("decision after the lease expired: %d %v", code, body)
	}
	code, claimed = s.post(reviewerKey2, itemPath+"/claim", nil)
	if code != 200 || claimed["claimed_by"] != api.ReviewerID(reviewerKey2) {
		t.Fatalf("claim after expiry: %d %v", code, claimed)
	}
	code, res := s.post(reviewerKey2, itemPath+"/decision", map[string]any{"decision": "approve", "reason": "a cartoon rabbit", "version": claimed["version"]})
	if code != 200 || res["outcome"] != "approved" {
		t.Fatalf("approve: %d %v", code, res)
	}
	if code, body := s.post(reviewerKey2, itemPath+"/decision", map[string]any{"decision": "approve"}); code != 409 || errorCode(body) != "already_decided" {
		t.Fatalf("second decision: %d %v", code, body)
	}
	s.waitVideo(id, "published", 3*time.Minute)
	ds := decisions(s, id)
	last := ds[len(ds)-1]
	if len(ds) != 2 || ds[0]["outcome"] != "needs_review" || last["outcome"] != "approved" || last["actor"] != "reviewer:"+api.ReviewerID(reviewerKey2) {
		t.Fatalf("decision log %v", ds)
	}
	ev := hook.wait(t, "decision", func(e webhook.Event) bool { return e.Type == webhook.TypeDecision && e.VideoID == id })
	if ev.Outcome != "approved" || ev.DecisionSeq != int64(last["seq"].(float64)) {
		t.Fatalf("webhook %+v", ev)
	}
	if _, err := s.vectors.Get(context.Background(), id); err != nil {
		t.Fatalf("approved lesson not indexed: %v", err)
	}
}

// TestReviewDeadlineEscalationAppeal: an item past its deadline escalates
// (priority up, a signed escalation webhook) while the video stays
// unpublished; a block is then appealed, the blocking reviewer may not take
// the appeal, another one approves with a statement of reasons.
func TestReviewDeadlineEscalationAppeal(t *testing.T) {
	s, hook := reviewStack(t, "test-review-animation", activities.ReviewSettings{Lease: time.Minute, Deadline: 3 * time.Second})
	id := uploadClip(s, "Sintel_1080_10s_2MB.mp4")
	s.waitVideo(id, "needs_review", 2*time.Minute)
	pending := s.waitItem(id, "pending", func(m map[string]any) bool { return m["kind"] == "model" })
	esc := s.waitItem(id, "escalated", kindState("model", "escalated"))
	if esc["priority"].(float64) < pending["priority"].(float64)+100 {
		t.Fatalf("escalation did not raise the priority: %v → %v", pending["priority"], esc["priority"])
	}
	ev := hook.wait(t, "escalation", func(e webhook.Event) bool { return e.Type == webhook.TypeEscalation && e.VideoID == id })
	if ev.ItemID != esc["id"] || ev.Actor != "system:deadline" {
		t.Fatalf("escalation webhook %+v", ev)
	}
	if _, v := s.get(adminKey, "/v1/videos/"+id); v["state"] != "needs_review" {
		t.Fatalf("escalated video is %v, want needs_review", v["state"])
	}
	// An escalated item can be claimed from the escalated list.
	code, body := s.get(reviewerKey, "/v1/review/items?state=escalated")
	if code != 200 || len(body["items"].([]any)) != 1 {
		t.Fatalf("escalated list: %d %v", code, body)
	}
	itemPath := "/v1/review/items/" + esc["id"].(string)
	if code, body := s.post(reviewerKey, itemPath+"/claim", nil); code != 200 {
		t.Fatalf("claim: %d %v", code, body)
	}
	code, res := s.post(reviewerKey, itemPath+"/decision", map[string]any{"decision": "block", "reason_code": "off_topic", "reason": "not a lesson"})
	if code != 200 || res["outcome"] != "blocked" {
		t.Fatalf("block: %d %v", code, res)
	}
	s.waitVideo(id, "blocked", time.Minute)

	// Appeal: only the teacher, only a blocked video, then a different reviewer.
	if code, body := s.post(appKey, "/v1/videos/"+id+"/appeals", map[string]any{"teacher_id": "someone", "statement": "x"}); code != 403 {
		t.Fatalf("appeal by another teacher: %d %v", code, body)
	}
	code, q := s.post(appKey, "/v1/videos/"+id+"/appeals", map[string]any{"teacher_id": "t-1", "statement": "An open-movie trailer used in my film class."})
	if code != 202 {
		t.Fatalf("appeal: %d %v", code, q)
	}
	if code, body := s.post(appKey, "/v1/videos/"+id+"/appeals", map[string]any{"teacher_id": "t-1", "statement": "again"}); code != 409 {
		t.Fatalf("second open appeal: %d %v", code, body)
	}
	appeal := s.waitItem(id, "appeal", func(m map[string]any) bool { return m["id"] == q["item_id"] })
	if appeal["kind"] != "appeal" || !strings.Contains(fmt.Sprint(appeal["excluded_reviewers"]), api.ReviewerID(reviewerKey)) {
		t.Fatalf("appeal item %v", appeal)
	}
	appealPath := "/v1/review/items/" + appeal["id"].(string)
	if code, body := s.post(reviewerKey, appealPath+"/claim", nil); code != 409 || errorCode(body) != "reviewer_excluded" {
		t.Fatalf("the blocking reviewer claims the appeal: %d %v", code, body)
	}
	if code, body := s.post(reviewerKey2, appealPath+"/claim", nil); code != 200 {
		t.Fatalf("claim appeal: %d %v", code, body)
	}
	if code, body := s.post(reviewerKey2, appealPath+"/decision", map[string]any{"decision": "approve"}); code != 400 {
		t.Fatalf("appeal answer without reasons: %d %v", code, body)
	}
	code, res = s.post(reviewerKey2, appealPath+"/decision", map[string]any{"decision": "approve", "reason": "film-class material, fine for the audience"})
	if code != 200 || res["outcome"] != "approved" {
		t.Fatalf("appeal approved: %d %v", code, res)
	}
	s.waitVideo(id, "published", 3*time.Minute)
	ds := decisions(s, id)
	last := ds[len(ds)-1]
	if last["outcome"] != "approved" || !strings.Contains(last["reason"].(string), "film-class") || last["actor"] != "reviewer:"+api.ReviewerID(reviewerKey2) {
		t.Fatalf("appeal decision %v", last)
	}
}

// TestReviewNamedAccounts: keys that name an account (LESSONFLOW_API_KEYS
// `token=role:name`) act as that account. Alice claims with one token and
// decides with another (a rotation) while Bob's claim is refused; the log
// says "reviewer:alice"; the appeal of her block excludes alice, whichever of
// her tokens she uses, and Bob takes it.
func TestReviewNamedAccounts(t *testing.T) {
	const alice1, alice2, bob = "alice-key-one-0123456789", "alice-key-two-0123456789", "bob-key-0123456789abcdef"
	s := newStack(t, stackOptions{policy: "test-review-animation", review: activities.ReviewSettings{Lease: time.Minute, Deadline: time.Hour},
		extraKeys: map[string]string{alice1: api.RoleReviewer, alice2: api.RoleReviewer, bob: api.RoleReviewer},
		names:     map[string]string{alice1: "alice", alice2: "alice", bob: "bob"}})
	id := uploadClip(s, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	s.waitVideo(id, "needs_review", 2*time.Minute)
	it := s.waitItem(id, "pending", kindState("model", "pending"))
	itemPath := "/v1/review/items/" + it["id"].(string)

	code, claimed := s.post(alice1, itemPath+"/claim", nil)
	if code != 200 || claimed["claimed_by"] != "alice" {
		t.Fatalf("alice claims: %d %v", code, claimed)
	}
	if code, body := s.post(bob, itemPath+"/claim", nil); code != 409 || errorCode(body) != "claimed" {
		t.Fatalf("bob claims alice's item: %d %v", code, body)
	}
	block := map[string]any{"decision": "block", "reason_code": "off_topic", "reason": "not a lesson"}
	if code, body := s.post(bob, itemPath+"/decision", block); code != 409 || errorCode(body) != "not_lease_holder" {
		t.Fatalf("bob decides alice's item: %d %v", code, body)
	}
	if code, res := s.post(alice2, itemPath+"/decision", block); code != 200 || res["outcome"] != "blocked" {
		t.Fatalf("alice decides with her other token: %d %v", code, res)
	}
	s.waitVideo(id, "blocked", time.Minute)
	ds := decisions(s, id)
	if last := ds[len(ds)-1]; last["actor"] != "reviewer:alice" || last["outcome"] != "blocked" {
		t.Fatalf("decision %v", last)
	}

	code, q := s.post(appKey, "/v1/videos/"+id+"/appeals", map[string]any{"teacher_id": "t-1", "statement": "A trailer for my film class."})
	if code != 202 {
		t.Fatalf("appeal: %d %v", code, q)
	}
	appeal := s.waitItem(id, "appeal", func(m map[string]any) bool { return m["id"] == q["item_id"] })
	appealPath := "/v1/review/items/" + appeal["id"].(string)
	for _, k := range []string{alice1, alice2} {
		if code, body := s.post(k, appealPath+"/claim", nil); code != 409 || errorCode(body) != "reviewer_excluded" {
			t.Fatalf("alice claims the appeal of her block: %d %v", code, body)
		}
	}
	if code, body := s.post(bob, appealPath+"/claim", nil); code != 200 || body["claimed_by"] != "bob" {
		t.Fatalf("bob claims the appeal: %d %v", code, body)
	}
}

// TestReviewReportSecondOpinionBlock: reports put a published lesson back in
// the queue; the configured number of reports takes it offline; blocking a
// lesson with an audience over the limit takes two reviewers; the blocked
// lesson leaves the vector store and the recommendations.
func TestReviewReportSecondOpinionBlock(t *testing.T) {
	s, hook := reviewStack(t, "default", activities.ReviewSettings{Lease: time.Minute, Deadline: time.Hour,
		SecondOpinionAudience: 2, ReportsToUnpublish: 2})
	id := uploadClip(s, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	s.waitVideo(id, "published", 3*time.Minute)
	for _, u := range []string{"u1", "u2", "u3"} {
		code, body := s.post(appKey, "/v1/users/"+u+"/events", map[string]any{"events": []map[string]any{
			{"event_id": "e1", "lesson_id": id, "type": "view", "at": time.Now().UTC().Format(time.RFC3339), "watch_seconds": 5}}})
		if code != 200 {
			t.Fatalf("events: %d %v", code, body)
		}
	}
	if !recommended(s, id) {
		t.Fatal("the published lesson is not recommended before the block")
	}

	code, q := s.post(appKey, "/v1/videos/"+id+"/reports", map[string]any{"reason": "off-topic cartoon", "reporter": "u1"})
	if code != 202 {
		t.Fatalf("report: %d %v", code, q)
	}
	it := s.waitItem(id, "report", kindState("report", "pending"))
	if it["id"] != q["item_id"] || it["audience"].(float64) != 3 {
		t.Fatalf("report item %v (queued %v)", it, q)
	}
	if _, v := s.get(adminKey, "/v1/videos/"+id); v["state"] != "published" {
		t.Fatalf("one report unpublished the video: %v", v["state"])
	}
	if code, body := s.post(appKey, "/v1/videos/"+id+"/reports", map[string]any{"reason": "spam"}); code != 202 || body["item_id"] != q["item_id"] {
		t.Fatalf("second report: %d %v", code, body)
	}
	s.waitVideo(id, "needs_review", time.Minute)
	it = s.waitItem(id, "two reports", func(m map[string]any) bool {
		r, _ := m["evidence"].(map[string]any)["reports"].([]any)
		return m["id"] == q["item_id"] && len(r) == 2
	})
	itemPath := "/v1/review/items/" + it["id"].(string)
	block := map[string]any{"decision": "block", "reason_code": "off_topic", "reason": "not a lesson"}
	if code, body := s.post(reviewerKey, itemPath+"/claim", nil); code != 200 {
		t.Fatalf("claim: %d %v", code, body)
	}
	code, res := s.post(reviewerKey, itemPath+"/decision", block)
	if code != 200 || res["outcome"] != "block_proposed" {
		t.Fatalf("first block: %d %v", code, res)
	}
	if item := res["item"].(map[string]any); item["state"] != "pending" || item["second_opinion"] != true {
		t.Fatalf("after the first block: %v", item)
	}
	if _, v := s.get(adminKey, "/v1/videos/"+id); v["state"] != "needs_review" {
		t.Fatalf("one reviewer's block applied: %v", v["state"])
	}
	if code, body := s.post(reviewerKey, itemPath+"/claim", nil); code != 409 || errorCode(body) != "reviewer_excluded" {
		t.Fatalf("the first reviewer gives the second opinion: %d %v", code, body)
	}
	if code, body := s.post(reviewerKey2, itemPath+"/claim", nil); code != 200 {
		t.Fatalf("second claim: %d %v", code, body)
	}
	code, res = s.post(reviewerKey2, itemPath+"/decision", block)
	if code != 200 || res["outcome"] != "blocked" {
		t.Fatalf("second block: %d %v", code, res)
	}
	s.waitVideo(id, "blocked", time.Minute)
	if _, err := s.vectors.Get(context.Background(), id); !errors.Is(err, vectorstore.ErrNotFound) {
		t.Fatalf("blocked lesson still in the vector store: %v", err)
	}
	if recommended(s, id) {
		t.Fatal("the blocked lesson is still recommended")
	}
	var outcomes []string
	for _, d := range decisions(s, id) {
		outcomes = append(outcomes, d["actor"].(string)+"="+d["outcome"].(string))
	}
	want := fmt.Sprintf("[model:nsfw_mobilenet_v2_224=approved system:reports=needs_review reviewer:%s=block_proposed reviewer:%s=blocked]",
		api.ReviewerID(reviewerKey), api.ReviewerID(reviewerKey2))
	if fmt.Sprint(outcomes) != want {
		t.Fatalf("decision log %v, want %s", outcomes, want)
	}
	hook.wait(t, "blocked", func(e webhook.Event) bool { return e.VideoID == id && e.Outcome == "blocked" })
	if code, body := s.post(appKey, "/v1/videos/"+id+"/reports", map[string]any{"reason": "x"}); code != 409 {
		t.Fatalf("report of a blocked video: %d %v", code, body)
	}
}

// recommended reports whether a new user's recommendations list the lesson.
func recommended(s *stack, id string) bool {
	s.t.Helper()
	code, body := s.get(appKey, "/v1/users/newcomer/recommendations?limit=50")
	if code != http.StatusOK {
		s.t.Fatalf("recommendations: %d %v", code, body)
	}
	for _, it := range body["items"].([]any) {
		if it.(map[string]any)["lesson_id"] == id {
			return true
		}
	}
	return false
}
