package moderation

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lessonflow/lessonflow/media"
)

//go:embed policies/*.yaml
var builtin embed.FS

// Policy is a versioned moderation policy: which labels make which signal,
// their thresholds, how frames aggregate, and how frames are sampled.
type Policy struct {
	Version     string                `yaml:"version" json:"version"`
	Description string                `yaml:"description" json:"description"`
	Model       string                `yaml:"model" json:"model"`   // model id the thresholds were set for
	Labels      []string              `yaml:"labels" json:"labels"` // that model's label order, checked at start
	Sampling    media.SamplerSettings `yaml:"sampling" json:"sampling"`
	Signals     []Signal              `yaml:"signals" json:"signals"`
	Aggregation Aggregation           `yaml:"aggregation" json:"aggregation"`
}

// Signal sums some labels' probabilities into one score per frame.
type Signal struct {
	Name   string   `yaml:"name" json:"name"`
	Labels []string `yaml:"labels" json:"labels"`
	// Rescan: a raw frame score at or above it triggers dense re-sampling around the frame.
	Rescan float64 `yaml:"rescan" json:"rescan"`
	// Review and Block apply to the smoothed score; Block 0 means this signal never blocks.
	Review float64 `yaml:"review" json:"review"`
	Block  float64 `yaml:"block" json:"block"`
	// Flash: a run of Aggregation.FlashFrames consecutive dense frames whose
	// raw scores all reach it goes to review even when the window mean stays
	// low, so a short real scene is not averaged away. 0 turns it off.
	Flash float64 `yaml:"flash" json:"flash"`

	idx []int
}

// Aggregation sets how frames become segments.
type Aggregation struct {
	// WindowMS is the width of the centred window whose mean raw score is a frame's smoothed score.
	WindowMS int64 `yaml:"window_ms" json:"window_ms"`
	// MergeGapMS: flagged runs closer than this become one segment.
	MergeGapMS int64 `yaml:"merge_gap_ms" json:"merge_gap_ms"`
	// MinBlockFrames: frames at or above the block threshold a segment needs to block.
	MinBlockFrames int `yaml:"min_block_frames" json:"min_block_frames"`
	// MinReviewFrames: frames at or above the review threshold a segment needs to ask for review.
	MinReviewFrames int `yaml:"min_review_frames" json:"min_review_frames"`
	// FlashFrames: how many consecutive dense frames make a flash (see Signal.Flash).
	FlashFrames int `yaml:"flash_frames" json:"flash_frames"`
}

// LoadPolicy reads a policy by built-in name ("default") or file path.
func LoadPolicy(nameOrPath string) (*Policy, error) {
	if nameOrPath == "" {
		nameOrPath = "default"
	}
	var data []byte
	var err error
	if !strings.ContainsAny(nameOrPath, "/\\") && !strings.HasSuffix(nameOrPath, ".yaml") {
		data, err = builtin.ReadFile("policies/" + nameOrPath + ".yaml")
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("load policy %q: no built-in policy of that name (have %s)", nameOrPath, strings.Join(BuiltinPolicies(), ", "))
		}
	} else {
		data, err = os.ReadFile(nameOrPath)
	}
	if err != nil {
		return nil, fmt.Errorf("load policy %q: %w", nameOrPath, err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("load policy %q: %w", nameOrPath, err)
	}
	return p, nil
}

// BuiltinPolicies lists the policies compiled into the binary.
func BuiltinPolicies() []string {
	entries, _ := builtin.ReadDir("policies")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), filepath.Ext(e.Name())))
	}
	return names
}

// ParsePolicy decodes and validates a policy; unknown fields are errors so a
// typo cannot silently disable a threshold.
func ParsePolicy(data []byte) (*Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	p.Sampling = p.Sampling.WithDefaults()
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *Policy) validate() error {
	if p.Version == "" {
		return errors.New("policy: version is required")
	}
	if len(p.Labels) == 0 {
		return errors.New("policy: labels (the model's label order) are required")
	}
	if len(p.Signals) == 0 {
		return errors.New("policy: at least one signal is required")
	}
	seen := map[string]bool{}
	for i := range p.Signals {
		s := &p.Signals[i]
		if s.Name == "" || seen[s.Name] {
			return fmt.Errorf("policy: signal %d: missing or duplicate name %q", i, s.Name)
		}
		seen[s.Name] = true
		if len(s.Labels) == 0 {
			return fmt.Errorf("policy: signal %s: no labels", s.Name)
		}
		s.idx = s.idx[:0]
		for _, l := range s.Labels {
			j := slices.Index(p.Labels, l)
			if j < 0 {
				return fmt.Errorf("policy: signal %s: label %q is not one of %v", s.Name, l, p.Labels)
			}
			s.idx = append(s.idx, j)
		}
		for name, v := range map[string]float64{"rescan": s.Rescan, "review": s.Review, "block": s.Block, "flash": s.Flash} {
			if v < 0 || v > 1 {
				return fmt.Errorf("policy: signal %s: %s %.3f is outside [0,1]", s.Name, name, v)
			}
		}
		if s.Review <= 0 {
			return fmt.Errorf("policy: signal %s: review threshold must be above 0", s.Name)
		}
		if s.Block > 0 && s.Block < s.Review {
			return fmt.Errorf("policy: signal %s: block %.3f below review %.3f", s.Name, s.Block, s.Review)
		}
	}
	a := p.Aggregation
	if a.FlashFrames < 0 {
		return errors.New("policy: aggregation.flash_frames must be ≥ 0")
	}
	if a.WindowMS < 0 || a.MergeGapMS < 0 || a.MinBlockFrames < 1 || a.MinReviewFrames < 1 {
		return errors.New("policy: aggregation needs window_ms ≥ 0, merge_gap_ms ≥ 0, min_block_frames ≥ 1, min_review_frames ≥ 1")
	}
	return nil
}

// CheckLabels fails when the model's labels are not the ones the policy was written for.
func (p *Policy) CheckLabels(modelLabels []string) error {
	if !slices.Equal(p.Labels, modelLabels) {
		return fmt.Errorf("policy %s expects labels %v, the model has %v", p.Version, p.Labels, modelLabels)
	}
	return nil
}

// signalScore is a signal's score for one frame: the sum of its labels' probabilities.
func (s *Signal) score(f FrameScore) float64 {
	var sum float64
	for _, j := range s.idx {
		if j < len(f.Scores) {
			sum += float64(f.Scores[j])
		}
	}
	return min(sum, 1)
}
