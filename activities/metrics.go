package activities

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	stageSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lessonflow_stage_seconds",
		Help:    "Duration of pipeline stages (activities) by outcome.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	}, []string{"stage", "state"})
	framesSampled = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lessonflow_frames_sampled_total",
		Help: "Frames sampled and stored, by pass (coarse, dense).",
	}, []string{"pass"})
	framesClassified = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lessonflow_frames_classified_total",
		Help: "Frames run through the explicit-content model.",
	})
	decisions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lessonflow_decisions_total",
		Help: "Moderation decisions by outcome.",
	}, []string{"outcome"})
)
