package config

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"
)

// ReviewConfig is the human review queue's settings.
type ReviewConfig struct {
	Lease                 time.Duration // LESSONFLOW_REVIEW_LEASE
	Deadline              time.Duration // LESSONFLOW_REVIEW_DEADLINE
	SecondOpinionAudience int           // LESSONFLOW_SECOND_OPINION_AUDIENCE (0: never)
	ReportsToUnpublish    int           // LESSONFLOW_REPORTS_TO_UNPUBLISH (0: never)
	WebhookURL            string        // LESSONFLOW_WEBHOOK_URL
	WebhookSecret         string        // LESSONFLOW_WEBHOOK_SECRET
	EvidenceKey           string        // LESSONFLOW_EVIDENCE_KEY
	EvidenceTTL           time.Duration // LESSONFLOW_EVIDENCE_TTL
}

func (r *ReviewConfig) fromEnv() []error {
	var errs []error
	dur := func(name, def string) time.Duration {
		d, err := time.ParseDuration(env(name, def))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s: want a positive duration like %s, got %q", name, def, os.Getenv(name)))
		}
		return d
	}
	count := func(name string, def int) int {
		n, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s: want a whole number ≥ 0, got %q", name, os.Getenv(name)))
		}
		return n
	}
	r.Lease = dur("LESSONFLOW_REVIEW_LEASE", "15m")
	r.Deadline = dur("LESSONFLOW_REVIEW_DEADLINE", "24h")
	r.EvidenceTTL = dur("LESSONFLOW_EVIDENCE_TTL", "10m")
	r.SecondOpinionAudience = count("LESSONFLOW_SECOND_OPINION_AUDIENCE", 1000)
	r.ReportsToUnpublish = count("LESSONFLOW_REPORTS_TO_UNPUBLISH", 3)
	r.WebhookURL = os.Getenv("LESSONFLOW_WEBHOOK_URL")
	r.WebhookSecret = os.Getenv("LESSONFLOW_WEBHOOK_SECRET")
	r.EvidenceKey = os.Getenv("LESSONFLOW_EVIDENCE_KEY")
	if r.WebhookURL != "" {
		u, err := url.Parse(r.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("LESSONFLOW_WEBHOOK_URL: want an http(s) URL, got %q", r.WebhookURL))
		}
		if len(r.WebhookSecret) < 16 {
			errs = append(errs, fmt.Errorf("LESSONFLOW_WEBHOOK_SECRET: need at least 16 bytes with LESSONFLOW_WEBHOOK_URL"))
		}
	}
	if r.EvidenceKey != "" && len(r.EvidenceKey) < 32 {
		errs = append(errs, fmt.Errorf("LESSONFLOW_EVIDENCE_KEY: need at least 32 bytes"))
	}
	return errs
}
