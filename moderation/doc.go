// Package moderation owns the moderation policy and the decision: how
// per-frame model scores become time segments, which segments deserve a dense
// re-scan, and whether a video is approved, blocked or sent to human review.
// It is pure Go (no I/O beyond reading a policy file) so the rules are tested
// on score sequences alone.
package moderation
