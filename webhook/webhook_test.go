package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is what a customer would run: verify, then accept.
func receiver(t *testing.T, secret []byte, status *int) (*httptest.Server, func() []Event) {
	var mu sync.Mutex
	var got []Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secret, r.Header.Get(HeaderSignature), body, time.Now(), DefaultTolerance); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil || ev.ID != r.Header.Get(HeaderDelivery) || ev.Type != r.Header.Get(HeaderEvent) {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if status != nil && *status != 0 {
			w.WriteHeader(*status)
			return
		}
		got = append(got, ev)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []Event { mu.Lock(); defer mu.Unlock(); return append([]Event(nil), got...) }
}

func TestSendVerify(t *testing.T) {
	secret := []byte("s3cret-s3cret-s3cret")
	srv, got := receiver(t, secret, nil)
	ev := Event{ID: "ri1:3", Type: TypeDecision, VideoID: "v1", Outcome: "blocked", Actor: "reviewer:rk_1", OccurredAt: time.Unix(1700000000, 0).UTC()}
	if err := (&Sender{URL: srv.URL, Secret: secret}).Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if evs := got(); len(evs) != 1 || evs[0] != ev {
		t.Fatalf("received %+v", evs)
	}
	// Wrong secret: the receiver refuses with 401, a permanent error.
	err := (&Sender{URL: srv.URL, Secret: []byte("other")}).Send(context.Background(), ev)
	var perm *PermanentError
	if !errors.As(err, &perm) || perm.Status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %v", err)
	}
	// An old timestamp is a replay.
	old := &Sender{URL: srv.URL, Secret: secret, Now: func() time.Time { return time.Now().Add(-time.Hour) }}
	if err := old.Send(context.Background(), ev); !errors.As(err, &perm) {
		t.Fatalf("replayed: %v", err)
	}
	if len(got()) != 1 {
		t.Fatal("a refused delivery was accepted")
	}
}

func TestSendRetryable(t *testing.T) {
	secret := []byte("k")
	status := http.StatusServiceUnavailable
	srv, _ := receiver(t, secret, &status)
	err := (&Sender{URL: srv.URL, Secret: secret}).Send(context.Background(), Event{ID: "e", Type: TypeEscalation})
	var perm *PermanentError
	if err == nil || errors.As(err, &perm) {
		t.Fatalf("503 should be a retryable error: %v", err)
	}
}

func TestVerify(t *testing.T) {
	secret := []byte("key")
	body := []byte(`{"id":"x"}`)
	now := time.Unix(1700000000, 0)
	h := Sign(secret, now, body)
	if !strings.HasPrefix(h, "t=1700000000,v1=") {
		t.Fatalf("header %q", h)
	}
	if err := Verify(secret, h, body, now.Add(time.Minute), DefaultTolerance); err != nil {
		t.Fatal(err)
	}
	// Several v1 values (secret rotation): one matching is enough.
	if err := Verify(secret, "t=1700000000,v1=00ff,"+h[len("t=1700000000,"):], body, now, DefaultTolerance); err != nil {
		t.Fatalf("rotation: %v", err)
	}
	for name, c := range map[string]struct {
		h    string
		body []byte
		now  time.Time
	}{
		"tampered body": {h, []byte(`{"id":"y"}`), now},
		"too old":       {h, body, now.Add(6 * time.Minute)},
		"future":        {h, body, now.Add(-6 * time.Minute)},
		"no v1":         {"t=1700000000", body, now},
		"no t":          {h[strings.Index(h, "v1="):], body, now},
		"empty":         {"", body, now},
		"bad hex":       {"t=1700000000,v1=zz", body, now},
	} {
		if err := Verify(secret, c.h, c.body, c.now, DefaultTolerance); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
