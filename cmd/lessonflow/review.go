package main

import (
	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/config"
	"github.com/lessonflow/lessonflow/webhook"
)

// reviewSettings are the worker's review rules from the configuration.
func reviewSettings(cfg config.Config) activities.ReviewSettings {
	return activities.ReviewSettings{
		Lease: cfg.Review.Lease, Deadline: cfg.Review.Deadline,
		SecondOpinionAudience: cfg.Review.SecondOpinionAudience, ReportsToUnpublish: cfg.Review.ReportsToUnpublish,
	}
}

// webhookSender is nil without LESSONFLOW_WEBHOOK_URL.
func webhookSender(cfg config.Config) *webhook.Sender {
	if cfg.Review.WebhookURL == "" {
		return nil
	}
	return &webhook.Sender{URL: cfg.Review.WebhookURL, Secret: []byte(cfg.Review.WebhookSecret)}
}
