package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/api"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/webhook"
	"github.com/lessonflow/lessonflow/workflows"
)

// stallingReceiver is a webhook endpoint that verifies every delivery and
// records its delivery id and event, but holds the first delivery open
// until the sender goes away: the worker delivering it is then killed
// with the decision recorded and the webhook still in flight.
type stallingReceiver struct {
	mu       sync.Mutex
	ids      []string
	events   []webhook.Event
	rejected int
	first    chan struct{} // closed when the first delivery arrived
	srv      *httptest.Server
}

func newStallingReceiver(t *testing.T) *stallingReceiver {
	h := &stallingReceiver{first: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev webhook.Event
		h.mu.Lock()
		if err := webhook.Verify([]byte(hookSecret), r.Header.Get(webhook.HeaderSignature), body, time.Now(), webhook.DefaultTolerance); err != nil ||
			json.Unmarshal(body, &ev) != nil || ev.ID != r.Header.Get("X-LessonFlow-Delivery") {
			h.rejected++
			h.mu.Unlock()
			http.Error(w, "bad delivery", http.StatusUnauthorized)
			return
		}
		h.ids, h.events = append(h.ids, ev.ID), append(h.events, ev)
		n := len(h.ids)
		h.mu.Unlock()
		if n == 1 {
			close(h.first)
			<-r.Context().Done() // never answered: the worker dies first
			return
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *stallingReceiver) deliveries() ([]string, []webhook.Event, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...), append([]webhook.Event(nil), h.events...), h.rejected
}

// TestReviewDecisionSurvivesWorkerKill: a block decision is accepted, and
// the worker process is SIGKILLed while the decision's webhook is being
// delivered. After a new worker starts, the decision is there exactly
// once: one log entry for the item version, the video blocked once, the
// item decided, the review workflow completed, and the webhook delivered
// again with the same delivery id (the receiver's only duplicates).
func TestReviewDecisionSurvivesWorkerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills worker processes; not in -short")
	}
	hook := newStallingReceiver(t)
	t.Setenv("LESSONFLOW_POLICY", "test-review-animation")
	t.Setenv("LESSONFLOW_WEBHOOK_URL", hook.srv.URL)
	t.Setenv("LESSONFLOW_WEBHOOK_SECRET", hookSecret)
	t.Setenv("LESSONFLOW_REVIEW_LEASE", "10m")
	s := newStack(t, stackOptions{noWorker: true})
	w1 := s.startWorkerProcess(t, 1)

	id, itemID, version := s.claimModelItem(t)
	itemPath := "/v1/review/items/" + itemID
	code, res := s.post(reviewerKey, itemPath+"/decision", map[string]any{
		"decision": "block", "reason_code": "off_topic", "reason": "not a lesson", "version": version})
	if code != http.StatusOK || res["outcome"] != "blocked" {
		t.Fatalf("block: %d %v", code, res)
	}
	select {
	case <-hook.first:
	case <-time.After(time.Minute):
		t.Fatal("the decision's webhook never started")
	}
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	t.Log("worker killed with the decision accepted and its webhook in flight")
	killedAt := time.Now()

	s.startWorkerProcess(t, 2)
	s.waitReviewCompleted(t, id)
	t.Logf("review workflow completed %s after the kill", time.Since(killedAt).Round(100*time.Millisecond))
	ds := s.checkBlockedOnce(t, id, itemID, version)
	ids, events, rejected := hook.deliveries()
	if len(ids) < 2 || rejected != 0 {
		t.Fatalf("webhook deliveries %v (%d rejected): want the stalled one and its retry", ids, rejected)
	}
	for i, ev := range events {
		if ids[i] != ids[0] || ev.Type != webhook.TypeDecision || ev.Outcome != "blocked" || ev.DecisionSeq != ds[1].Seq {
			t.Fatalf("delivery %d: id %s event %+v; want every delivery to be the same event %s", i, ids[i], ev, ids[0])
		}
	}
	t.Logf("webhook delivered %d times, all with delivery id %s", len(ids), ids[0])
}

// TestReviewDecisionKilledInsideRecord: the worker is SIGKILLed inside
// RecordReviewDecision itself, after the decision is in the log and the
// video blocked but before the activity finishes: the test holds the vector
// store's write lock, so the activity's Unindex waits on it. The reviewer's
// request gets an answer to retry (503) or the outcome; once a new worker
// has retried the activity (after its start-to-close timeout), the decision
// is there exactly once and a repeated request answers 409.
func TestReviewDecisionKilledInsideRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("kills worker processes; not in -short")
	}
	t.Setenv("LESSONFLOW_POLICY", "test-review-animation")
	t.Setenv("LESSONFLOW_REVIEW_LEASE", "10m")
	s := newStack(t, stackOptions{noWorker: true})
	w1 := s.startWorkerProcess(t, 1)
	id, itemID, version := s.claimModelItem(t)
	ctx := context.Background()

	unlock := lockSQLite(t, s.vectors.Path())
	decision := map[string]any{"decision": "block", "reason_code": "off_topic", "reason": "not a lesson", "version": version}
	answer := make(chan string, 1)
	go func() { answer <- postStatus(s, reviewerKey, "/v1/review/items/"+itemID+"/decision", decision) }()

	key := activities.ReviewDecisionKey(itemID, version)
	deadline := time.Now().Add(time.Minute)
	for !decisionLogged(ctx, s, id, key) {
		if time.Now().After(deadline) {
			t.Fatal("the decision never reached the log")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The activity blocks the video a moment after it logs the decision
	// (it saves the review item in between), then waits on the lock.
	for {
		v, err := s.catalog.GetVideo(ctx, id)
		if err == nil && v.State == catalog.StateBlocked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("video %v %v: want blocked before the unindex", v.State, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	unlock()
	t.Log("worker killed inside RecordReviewDecision (decision logged, video blocked, unindex waiting)")
	killedAt := time.Now()

	s.startWorkerProcess(t, 2)
	s.waitReviewCompleted(t, id)
	t.Logf("review workflow completed %s after the kill", time.Since(killedAt).Round(100*time.Millisecond))
	s.checkBlockedOnce(t, id, itemID, version)
	got := <-answer
	if got != "200 blocked" && got != "503 unavailable" {
		t.Fatalf("the reviewer's request answered %s; want the outcome or a 503 to retry", got)
	}
	t.Logf("the reviewer's request answered %s", got)
	if code, res := s.post(reviewerKey, "/v1/review/items/"+itemID+"/decision", decision); code != http.StatusConflict {
		t.Fatalf("the reviewer's retry: %d %v, want 409", code, res)
	}
}

// lockSQLite takes the write lock of the SQLite database at path, as a
// stuck writer would, until the returned func releases it.
func lockSQLite(t *testing.T, path string) func() {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err == nil {
		_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	}
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// decisionLogged reports whether video id's decision log has an entry
// under key.
func decisionLogged(ctx context.Context, s *stack, id, key string) bool {
	ds, err := s.catalog.Decisions(ctx, id)
	if err != nil {
		return false
	}
	for _, d := range ds {
		if d.Key == key {
			return true
		}
	}
	return false
}

// postStatus posts body as JSON and answers "<status> <outcome or error
// code>"; unlike stack.post it may run outside the test goroutine.
func postStatus(s *stack, key, path string, body any) string {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.api.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode == http.StatusOK {
		return fmt.Sprintf("%d %v", resp.StatusCode, m["outcome"])
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, errorCode(m))
}

// waitReviewCompleted waits for the model review workflow of video id to
// complete.
func (s *stack) waitReviewCompleted(t *testing.T, id string) {
	t.Helper()
	wfID := workflows.ReviewWorkflowID("model", id, "")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, err := s.temporal.DescribeWorkflowExecution(context.Background(), wfID, "")
		if err == nil && d.WorkflowExecutionInfo.Status == enums.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("review workflow not completed: %v %v", d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkBlockedOnce checks that the reviewer's block of item version is in
// the decision log exactly once after the model's decision, the video is
// blocked and the item decided. It returns the log.
func (s *stack) checkBlockedOnce(t *testing.T, id, itemID string, version int64) []catalog.Decision {
	t.Helper()
	ctx := context.Background()
	key := activities.ReviewDecisionKey(itemID, version)
	ds, err := s.catalog.Decisions(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var forKey, blocks int
	for _, d := range ds {
		if d.Key == key {
			forKey++
		}
		if d.Outcome == "blocked" {
			blocks++
		}
	}
	if forKey != 1 || blocks != 1 || len(ds) != 2 || ds[1].Actor != "reviewer:"+api.ReviewerID(reviewerKey) {
		t.Fatalf("decision log: %d entries keyed %s, %d blocks: %+v", forKey, key, blocks, ds)
	}
	if v, _ := s.catalog.GetVideo(ctx, id); v.State != "blocked" {
		t.Fatalf("video %s", v.State)
	}
	if code, item := s.get(reviewerKey, "/v1/review/items/"+itemID); code != http.StatusOK || item["state"] != "decided" {
		t.Fatalf("item: %d %v", code, item)
	}
	return ds
}

// TestTemporalServerKilledOnReviewPath: the Temporal server (persisted) is
// SIGKILLed while a reviewer holds an item. A decision sent while it is down
// answers 503 and changes nothing; after the restart the lease still holds,
// the same decision goes through, and it is recorded exactly once.
func TestTemporalServerKilledOnReviewPath(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the Temporal server; not in -short")
	}
	t.Setenv("LESSONFLOW_POLICY", "test-review-animation")
	t.Setenv("LESSONFLOW_REVIEW_LEASE", "10m")
	srv, opts := startPersistedServer(t)
	s := newStack(t, stackOptions{server: srv, namespace: "default", noWorker: true})
	s.startWorkerProcess(t, 1)

	id, itemID, version := s.claimModelItem(t)
	itemPath := "/v1/review/items/" + itemID
	decision := map[string]any{"decision": "block", "reason_code": "off_topic", "reason": "not a lesson", "version": version}

	srv.Kill()
	t.Log("Temporal server killed with the item claimed")
	if code, res := s.post(reviewerKey, itemPath+"/decision", decision); code != http.StatusServiceUnavailable {
		t.Fatalf("decision with Temporal down: %d %v, want 503", code, res)
	}
	if v, _ := s.catalog.GetVideo(context.Background(), id); v.State != "needs_review" {
		t.Fatalf("video %s after a refused decision", v.State)
	}
	if ds, _ := s.catalog.Decisions(context.Background(), id); len(ds) != 1 {
		t.Fatalf("decision log after a refused decision: %+v", ds)
	}

	restartServer(t, srv, opts)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, res := s.post(reviewerKey, itemPath+"/decision", decision)
		if code == http.StatusOK && res["outcome"] == "blocked" {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("decision after the restart: %d %v", code, res)
		}
		time.Sleep(time.Second)
	}
	s.waitReviewCompleted(t, id)
	s.checkBlockedOnce(t, id, itemID, version)
	// A second try of the same decision finds it made.
	if code, res := s.post(reviewerKey, itemPath+"/decision", decision); code != http.StatusConflict {
		t.Fatalf("repeated decision: %d %v, want 409", code, res)
	}
}

// claimModelItem uploads Big Buck Bunny (sent to review by the
// test-review-animation policy) and claims its model review item as
// reviewerKey: the video id, the item id and the claimed version.
func (s *stack) claimModelItem(t *testing.T) (id, itemID string, version int64) {
	t.Helper()
	id = uploadClip(s, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	s.waitVideo(id, "needs_review", 3*time.Minute)
	it := s.waitItem(id, "pending", kindState("model", "pending"))
	itemID = it["id"].(string)
	code, claimed := s.post(reviewerKey, "/v1/review/items/"+itemID+"/claim", nil)
	if code != http.StatusOK {
		t.Fatalf("claim: %d %v", code, claimed)
	}
	return id, itemID, int64(claimed["version"].(float64))
}
