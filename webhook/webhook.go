// Package webhook owns outgoing decision notifications: the event body, the
// HMAC-SHA256 signature over timestamp and body, one delivery attempt, and
// the receiver-side Verify. Retries with backoff are the caller's: the
// review workflow delivers through a Temporal activity with its own retry
// policy, so a delivery survives worker restarts.
//
// # Signature
//
// Every request carries
//
//	X-LessonFlow-Event:     decision | escalation
//	X-LessonFlow-Delivery:  the event id (the same on every retry; dedupe on it)
//	X-LessonFlow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//
// A receiver recomputes the HMAC over the timestamp, a dot and the raw body,
// compares in constant time, and refuses timestamps outside its tolerance
// (Verify does all three), which stops replays of old deliveries.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names.
const (
	HeaderSignature = "X-LessonFlow-Signature"
	HeaderEvent     = "X-LessonFlow-Event"
	HeaderDelivery  = "X-LessonFlow-Delivery"
)

// Event types.
const (
	TypeDecision   = "decision"
	TypeEscalation = "escalation"
)

// Event is one notification. ID is stable across retries.
type Event struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	VideoID     string    `json:"video_id"`
	ItemID      string    `json:"item_id,omitempty"`
	Kind        string    `json:"kind,omitempty"`
	Outcome     string    `json:"outcome"`
	Actor       string    `json:"actor"`
	ReasonCode  string    `json:"reason_code,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Priority    float64   `json:"priority,omitempty"`
	DecisionSeq int64     `json:"decision_seq,omitempty"`
	OccurredAt  time.Time `json:"occurred_at"`
}

// Sign returns the X-LessonFlow-Signature value for body sent at ts.
func Sign(secret []byte, ts time.Time, body []byte) string {
	t := strconv.FormatInt(ts.Unix(), 10)
	return "t=" + t + ",v1=" + hex.EncodeToString(mac(secret, t, body))
}

func mac(secret []byte, t string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(t))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// ErrSignature is returned (wrapped) by Verify for a missing, malformed,
// wrong or too old signature.
var ErrSignature = errors.New("webhook: bad signature")

// DefaultTolerance is how far a timestamp may be from now.
const DefaultTolerance = 5 * time.Minute

// Verify checks a received request's signature header against its raw body.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var t string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			t = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(t, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: header %q is not t=<unix>,v1=<hex>", ErrSignature, header)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %d is %s away from now", ErrSignature, sec, d.Round(time.Second))
	}
	want := mac(secret, t, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no signature matches", ErrSignature)
}

// Sender delivers events to one URL.
type Sender struct {
	URL    string
	Secret []byte
	Client *http.Client // nil: a client with a 10 s timeout
	Now    func() time.Time
}

// PermanentError is a delivery no retry can fix (the receiver answered 4xx
// other than 408/429); callers should not retry it.
type PermanentError struct{ Status int }

func (e *PermanentError) Error() string {
	return fmt.Sprintf("webhook: receiver refused the event with HTTP %d", e.Status)
}

// Send makes one delivery attempt. A 2xx answer is success; anything else
// is an error, a *PermanentError for a 4xx refusal.
func (s *Sender) Send(ctx context.Context, ev Event) error {
	if s.URL == "" {
		return errors.New("webhook: no URL")
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook: encode event %s: %w", ev.ID, err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lessonflow-webhook/1")
	req.Header.Set(HeaderEvent, ev.Type)
	req.Header.Set(HeaderDelivery, ev.ID)
	req.Header.Set(HeaderSignature, Sign(s.Secret, now(), body))
	c := s.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: deliver %s: %w", ev.ID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return &PermanentError{Status: resp.StatusCode}
	default:
		return fmt.Errorf("webhook: deliver %s: HTTP %d", ev.ID, resp.StatusCode)
	}
}
