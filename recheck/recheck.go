// Package recheck owns the rules of a re-check batch, without Temporal: how
// a batch's policy is stored and read back (by content, so workflow history
// carries a key and a hash, never the text), which videos a batch walks, how
// a shadow verdict compares with what a video is today and when that
// difference goes to a human, and when stored dense frames still cover what
// a new policy asks for. The workflow and activities apply these; the API
// and CLI start batches and show their progress.
package recheck

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
)

// Temporal names of the batch workflow.
const (
	WorkflowName  = "RecheckBatch"
	QueryProgress = "progress"
)

// WorkflowID is the batch workflow's id.
func WorkflowID(batchID string) string { return "recheck-" + batchID }

// Input starts a batch workflow, or continues one: Progress carries where
// the walk is across continue-as-new. It lives here, not with the workflow,
// so the API can start a batch without linking the worker's packages.
type Input struct {
	BatchID     string          `json:"batch_id"`
	Policy      PolicyRef       `json:"policy"`
	States      []catalog.State `json:"states"`
	RequestedBy string          `json:"requested_by"`
	// PageSize videos are listed and re-checked side by side; after RunSize
	// videos the workflow continues as new, so history stays small however
	// many videos there are.
	PageSize int      `json:"page_size"`
	RunSize  int      `json:"run_size"`
	Progress Progress `json:"progress"`
}

// DefaultStates are the videos a batch walks unless told otherwise: every
// video a verdict has been applied to.
var DefaultStates = []catalog.State{catalog.StatePublished, catalog.StateApproved, catalog.StateBlocked}

// Batch sizes.
const (
	DefaultPageSize = 20  // videos listed (and re-checked side by side) at once
	MaxPageSize     = 100 // also bounds what one page's results add to history
	DefaultRunSize  = 100 // videos per workflow run before continue-as-new
	MaxRunSize      = 1000
	MaxPolicyBytes  = 64 << 10
)

// ErrInvalid is returned (wrapped) for a request no retry can fix.
var ErrInvalid = errors.New("recheck: invalid request")

var batchIDRe = regexp.MustCompile(`^rc[0-9a-f]{20}$`)

// NewBatchID returns a random batch id.
func NewBatchID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "rc" + hex.EncodeToString(b[:])
}

// ValidBatchID reports whether id could have come from NewBatchID.
func ValidBatchID(id string) bool { return batchIDRe.MatchString(id) }

// PolicyRef names a stored policy: its blob key and sha256, and its version.
type PolicyRef struct {
	Key     string `json:"key"`
	SHA256  string `json:"sha256"`
	Version string `json:"version"`
}

// PolicyKey is where a policy text with this sha256 is stored.
func PolicyKey(sha string) string { return "rechecks/policies/" + sha + ".yaml" }

// ShadowPrefix is where a batch keeps the frames it sampled again for a video.
func ShadowPrefix(batchID, videoID string) string {
	return "rechecks/" + batchID + "/" + videoID + "/"
}

// ParsePolicy validates a policy text for a batch.
func ParsePolicy(text []byte) (*moderation.Policy, error) {
	if len(text) == 0 {
		return nil, fmt.Errorf("%w: empty policy", ErrInvalid)
	}
	if len(text) > MaxPolicyBytes {
		return nil, fmt.Errorf("%w: policy is %d bytes, at most %d", ErrInvalid, len(text), MaxPolicyBytes)
	}
	p, err := moderation.ParsePolicy(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return p, nil
}

// StorePolicy validates a policy text and stores it by content (storing the
// same text twice is one object).
func StorePolicy(ctx context.Context, blobs blob.Store, text []byte) (PolicyRef, *moderation.Policy, error) {
	p, err := ParsePolicy(text)
	if err != nil {
		return PolicyRef{}, nil, err
	}
	sum := sha256.Sum256(text)
	ref := PolicyRef{SHA256: hex.EncodeToString(sum[:]), Version: p.Version}
	ref.Key = PolicyKey(ref.SHA256)
	if _, err := blob.PutBytes(ctx, blobs, ref.Key, text); err != nil {
		return PolicyRef{}, nil, fmt.Errorf("store policy %s: %w", p.Version, err)
	}
	return ref, p, nil
}

// PolicyText reads a stored policy text back, checking its hash.
func PolicyText(ctx context.Context, blobs blob.Store, ref PolicyRef) ([]byte, error) {
	b, err := blob.GetBytes(ctx, blobs, ref.Key, MaxPolicyBytes)
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", ref.Version, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != ref.SHA256 {
		return nil, fmt.Errorf("read policy %s: %s has sha256 %s, the batch says %s", ref.Version, ref.Key, got, ref.SHA256)
	}
	return b, nil
}

// LoadPolicy reads and parses a stored policy.
func LoadPolicy(ctx context.Context, blobs blob.Store, ref PolicyRef) (*moderation.Policy, error) {
	b, err := PolicyText(ctx, blobs, ref)
	if err != nil {
		return nil, err
	}
	return ParsePolicy(b)
}

// CheckStates validates the states a batch walks: each a state a verdict
// applies to, no repeats; nil or empty means DefaultStates.
func CheckStates(states []catalog.State) ([]catalog.State, error) {
	if len(states) == 0 {
		return append([]catalog.State(nil), DefaultStates...), nil
	}
	seen := map[catalog.State]bool{}
	for _, s := range states {
		switch s {
		case catalog.StatePublished, catalog.StateApproved, catalog.StateBlocked:
		default:
			return nil, fmt.Errorf("%w: state %q: a re-check walks published, approved or blocked videos", ErrInvalid, s)
		}
		if seen[s] {
			return nil, fmt.Errorf("%w: state %q twice", ErrInvalid, s)
		}
		seen[s] = true
	}
	return states, nil
}

// Current is what a video's state says was decided: approved for a video
// that is approved or published, blocked for a blocked one, "" otherwise.
func Current(state catalog.State) moderation.Outcome {
	switch state {
	case catalog.StateApproved, catalog.StatePublished:
		return moderation.Approved
	case catalog.StateBlocked:
		return moderation.Blocked
	}
	return ""
}

// LastModelDecision is the newest decision a model took on a video, or nil.
// Human decisions (reviews) are skipped: a re-check compares models and
// policies, not a model with a person.
func LastModelDecision(ds []catalog.Decision) *catalog.Decision {
	for i := len(ds) - 1; i >= 0; i-- {
		if strings.HasPrefix(ds[i].Actor, "model:") {
			return &ds[i]
		}
	}
	return nil
}

// Verdict compares a shadow verdict with a video's past.
type Verdict struct {
	// Old is the previous model verdict (or, with no model decision on
	// record, what the state says).
	Old moderation.Outcome
	// Changed: the new policy decides differently from the old model verdict.
	Changed bool
	// NeedsReview: the new verdict also disagrees with what the video is
	// today, so a person must look. A re-check never changes a video itself.
	NeedsReview bool
}

// Compare decides whether a shadow verdict is a change, and whether it goes
// to review. A video a person approved after the model asked for review is
// not sent back when the new policy asks for review again: only a verdict
// that differs from the old model's and from the video's state is.
func Compare(state catalog.State, last *catalog.Decision, shadow moderation.Outcome) Verdict {
	cur := Current(state)
	v := Verdict{Old: cur}
	if last != nil && last.Outcome != "" {
		v.Old = moderation.Outcome(last.Outcome)
	}
	v.Changed = shadow != v.Old
	v.NeedsReview = v.Changed && cur != "" && shadow != cur
	return v
}

// Covered reports whether stored dense frames (their times, sorted or not)
// still cover every window a new policy asks to re-sample at fps: each
// window needs frames from within one slot of its start to within one slot
// of its end, never more than two slots apart. Then the stored frames are as
// good as a new dense pass; otherwise the video is sampled again.
func Covered(windows []media.Window, ptsMS []int64, fps float64) bool {
	if fps <= 0 {
		return false
	}
	slot := int64(1000/fps + 0.5)
	for _, w := range windows {
		var in []int64
		for _, t := range ptsMS {
			if t >= w.StartMS && t <= w.EndMS {
				in = append(in, t)
			}
		}
		if len(in) == 0 {
			return false
		}
		slices.Sort(in)
		if in[0] > w.StartMS+slot || in[len(in)-1] < w.EndMS-slot {
			return false
		}
		for i := 1; i < len(in); i++ {
			if in[i]-in[i-1] > 2*slot {
				return false
			}
		}
	}
	return true
}

// InWindows keeps the times inside any window.
func InWindows(t int64, windows []media.Window) bool {
	for _, w := range windows {
		if t >= w.StartMS && t <= w.EndMS {
			return true
		}
	}
	return false
}

// Progress is a batch's state, as the workflow's progress query answers it
// and as it is carried across continue-as-new.
type Progress struct {
	BatchID string `json:"batch_id"`
	// Done is true once every state has been walked.
	Done bool `json:"done"`
	// StateIndex and Cursor say where the walk is: the state being listed
	// and the catalog cursor of its next page.
	StateIndex int    `json:"state_index"`
	State      string `json:"state"`
	Cursor     string `json:"cursor"`
	// Counts over the whole batch, from the recorded results: each video
	// once, however often a page was retried.
	Processed    int `json:"processed"`
	Changed      int `json:"changed"`
	Errors       int `json:"errors"`
	SentToReview int `json:"sent_to_review"`
	// Skipped counts videos whose re-check failed after its retries (nothing
	// recorded; a later batch picks them up).
	Skipped int `json:"skipped"`
	// Runs is how many workflow runs the batch took (continue-as-new).
	Runs int `json:"runs"`
	// Failed says why the batch stopped early.
	Failed string `json:"failed,omitempty"`
}
