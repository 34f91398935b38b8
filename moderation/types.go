package moderation

// Outcome is what moderation decided for a video.
type Outcome string

const (
	Approved    Outcome = "approved"
	Blocked     Outcome = "blocked"
	NeedsReview Outcome = "needs_review"
)

// Action is what a segment asks for.
type Action string

const (
	ActionBlock  Action = "block"
	ActionReview Action = "review"
)

// FrameScore is one classified frame: label probabilities in the model's label order.
type FrameScore struct {
	PTSMS  int64     `json:"pts_ms"`
	Dense  bool      `json:"dense,omitempty"`
	Scores []float32 `json:"scores"`
}

// Segment is a run of neighbouring frames whose smoothed score for one signal
// crossed the review threshold.
type Segment struct {
	Signal    string  `json:"signal"`
	Action    Action  `json:"action"`
	StartMS   int64   `json:"start_ms"`
	EndMS     int64   `json:"end_ms"`
	MaxScore  float64 `json:"max_score"`  // highest raw frame score inside
	MeanScore float64 `json:"mean_score"` // mean raw frame score inside
	PeakScore float64 `json:"peak_smoothed"`
	Frames    int     `json:"frames"`
}

// SignalSummary is the evidence for one signal over the whole video.
type SignalSummary struct {
	MaxRaw      float64 `json:"max_raw"`
	MaxRawAtMS  int64   `json:"max_raw_at_ms"`
	MaxSmoothed float64 `json:"max_smoothed"`
	Frames      int     `json:"frames"`
}

// Decision is the policy's verdict on one video.
type Decision struct {
	Outcome       Outcome                  `json:"outcome"`
	Reason        string                   `json:"reason"`
	PolicyVersion string                   `json:"policy_version"`
	Segments      []Segment                `json:"segments"`
	Signals       map[string]SignalSummary `json:"signals"`
}
