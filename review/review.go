// Package review owns the human review queue's rules, without Temporal or
// storage: the review item and its state machine (claim, lease, release,
// decide, escalate, second opinion, excluded reviewers), the priority score,
// and the signed, expiring tokens of evidence URLs. The review workflow
// applies these functions to its state; the API and the catalog only show
// and store the result.
package review

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Kind is why an item is in the queue.
type Kind string

const (
	KindModel   Kind = "model"   // moderation said needs_review
	KindReport  Kind = "report"  // users reported a published video
	KindAppeal  Kind = "appeal"  // the teacher appealed a block
	KindRecheck Kind = "recheck" // a new model or policy decides differently
)

// Kinds lists every Kind.
var Kinds = []Kind{KindModel, KindReport, KindAppeal, KindRecheck}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool { return slices.Contains(Kinds, k) }

// State is where an item is in the queue.
type State string

const (
	StatePending   State = "pending"   // waiting for a reviewer
	StateClaimed   State = "claimed"   // a reviewer holds the lease
	StateDecided   State = "decided"   // final; the outcome runs
	StateEscalated State = "escalated" // past its deadline, disputed or escalated by hand; still open
)

// States lists every State.
var States = []State{StatePending, StateClaimed, StateDecided, StateEscalated}

// Valid reports whether s is one of States.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Decisions a reviewer can take.
const (
	Approve  = "approve"
	Block    = "block"
	Escalate = "escalate"
)

// Limits of decision text.
const (
	MaxReasonCodeLen = 64
	MaxReasonLen     = 2000
)

// Decision is one reviewer's verdict on an item.
type Decision struct {
	Decision   string    `json:"decision"`
	ReasonCode string    `json:"reason_code,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Reviewer   string    `json:"reviewer"`
	Version    int64     `json:"version"` // the item version decided on
	DecidedAt  time.Time `json:"decided_at"`
}

// Item is one entry of the review queue: the workflow's state and, through
// the catalog projection, what the API shows.
type Item struct {
	ID       string   `json:"id"`
	VideoID  string   `json:"video_id"`
	Kind     Kind     `json:"kind"`
	State    State    `json:"state"`
	Priority float64  `json:"priority"`
	Reason   string   `json:"reason"`
	Evidence Evidence `json:"evidence"`
	// ClaimedBy and LeaseExpiresAt are set while State is claimed.
	ClaimedBy      string     `json:"claimed_by"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at"`
	// Decision is the final decision once State is decided.
	Decision *Decision `json:"decision"`

	// Version grows by one with every change; a decision names the version
	// it was taken on, so a reviewer acting on a stale view is refused.
	Version int64 `json:"version"`
	// Opinions are every decision taken on the item, in order (a block that
	// waits for a second opinion, an escalation, the final one).
	Opinions []Decision `json:"opinions"`
	// Excluded reviewers may not claim the item: the reviewer whose block is
	// appealed, the first of two opinions.
	Excluded []string `json:"excluded_reviewers"`
	// SecondOpinion is true while a block waits for a second reviewer.
	SecondOpinion bool `json:"second_opinion"`
	// Disputed is set when a second reviewer disagreed with a proposed
	// block: the next reviewer decides alone.
	Disputed bool `json:"disputed"`
	// Escalated is set once; a released lease returns the item to escalated.
	Escalated  bool      `json:"escalated"`
	Audience   int       `json:"audience"`
	DeadlineAt time.Time `json:"deadline_at"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// BasePriority is Priority without the waiting-time term; Rank orders
	// the queue for all time (see Rank).
	BasePriority float64 `json:"base_priority"`
	// WorkflowID and RunID are the review workflow run that owns the item.
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

// Evidence is what the reviewer looks at: flagged segments with thumbnails
// (blob keys here; the API turns them into signed URLs), reports, and the
// policy that flagged it.
type Evidence struct {
	PolicyVersion string    `json:"policy_version,omitempty"`
	ModelID       string    `json:"model_id,omitempty"`
	Segments      []Segment `json:"segments"`
	Reports       []Report  `json:"reports,omitempty"`
	// Statement is the teacher's appeal text.
	Statement string `json:"statement,omitempty"`
	// Diff describes what a re-check changed.
	Diff string `json:"diff,omitempty"`
}

// Segment is one flagged stretch of the video.
type Segment struct {
	Signal    string  `json:"signal"`
	Action    string  `json:"action"`
	StartMS   int64   `json:"start_ms"`
	EndMS     int64   `json:"end_ms"`
	MaxScore  float64 `json:"max_score"`
	PeakScore float64 `json:"peak_smoothed"`
	// ThumbAtMS is when the thumbnail frame was taken.
	ThumbAtMS int64 `json:"thumbnail_at_ms"`
	// ThumbKey is the thumbnail's blob key; never shown, the API signs it.
	ThumbKey string `json:"thumbnail_key,omitempty"`
	// ThumbURL and SharpURL are filled by the API: blurred and sharp.
	ThumbURL string `json:"thumbnail_url,omitempty"`
	SharpURL string `json:"sharp_url,omitempty"`
}

// Report is one user report.
type Report struct {
	Reason     string    `json:"reason"`
	Reporter   string    `json:"reporter,omitempty"`
	ReportedAt time.Time `json:"reported_at"`
}

// Errors of the state machine. The workflow's Update validators return
// them, and the API maps ErrInvalid to 400 and the rest to 409.
var (
	ErrInvalid     = errors.New("review: invalid request")
	ErrNotHolder   = errors.New("review: the reviewer does not hold the lease")
	ErrStale       = errors.New("review: stale item version")
	ErrClaimed     = errors.New("review: item is claimed by another reviewer")
	ErrDecided     = errors.New("review: item is already decided")
	ErrExcluded    = errors.New("review: reviewer may not take this item")
	ErrNotClaimed  = errors.New("review: item is not claimed")
	ErrLeaseActive = errors.New("review: lease has not expired")
)

// Request is a reviewer's decision as sent to the API.
type Request struct {
	Decision   string `json:"decision"`
	ReasonCode string `json:"reason_code"`
	Reason     string `json:"reason"`
	// Version is the item version the reviewer saw; 0 means "the current one".
	Version int64 `json:"version,omitempty"`
}

// Validate checks a request on its own: a known decision, and a reason code
// and text for a block (and for any decision on an appeal, whose answer is a
// statement of reasons).
func (r Request) Validate(kind Kind) error {
	switch r.Decision {
	case Approve, Block, Escalate:
	default:
		return fmt.Errorf("%w: decision must be approve, block or escalate, got %q", ErrInvalid, r.Decision)
	}
	if len(r.ReasonCode) > MaxReasonCodeLen || !validCode(r.ReasonCode) {
		return fmt.Errorf("%w: reason_code must be at most %d characters of a-z, 0-9, _ and -", ErrInvalid, MaxReasonCodeLen)
	}
	if len(r.Reason) > MaxReasonLen {
		return fmt.Errorf("%w: reason is longer than %d characters", ErrInvalid, MaxReasonLen)
	}
	if r.Decision == Block && (r.ReasonCode == "" || strings.TrimSpace(r.Reason) == "") {
		return fmt.Errorf("%w: a block needs reason_code and reason", ErrInvalid)
	}
	if kind == KindAppeal && r.Decision != Escalate && strings.TrimSpace(r.Reason) == "" {
		return fmt.Errorf("%w: an appeal's answer needs a reason (the statement of reasons)", ErrInvalid)
	}
	if r.Version < 0 {
		return fmt.Errorf("%w: version must not be negative", ErrInvalid)
	}
	return nil
}

func validCode(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// open reports whether the item still awaits a decision.
func (it *Item) open() bool { return it.State != StateDecided }

// waitingState is where a released or expired item returns to.
func (it *Item) waitingState() State {
	if it.Escalated {
		return StateEscalated
	}
	return StatePending
}

func (it *Item) touch(now time.Time) {
	it.Version++
	it.UpdatedAt = now
}

// CheckClaim says whether reviewer may claim the item now. A reviewer who
// already holds the lease may claim again to renew it.
func (it *Item) CheckClaim(reviewer string, now time.Time) error {
	switch {
	case reviewer == "":
		return fmt.Errorf("%w: no reviewer", ErrInvalid)
	case !it.open():
		return ErrDecided
	case slices.Contains(it.Excluded, reviewer):
		return fmt.Errorf("%w: %s already decided on this video", ErrExcluded, reviewer)
	case it.State == StateClaimed && it.ClaimedBy != reviewer && !it.leaseExpired(now):
		return fmt.Errorf("%w until %s", ErrClaimed, it.LeaseExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// Claim gives reviewer a lease of length lease.
func (it *Item) Claim(reviewer string, now time.Time, lease time.Duration) error {
	if err := it.CheckClaim(reviewer, now); err != nil {
		return err
	}
	exp := now.Add(lease)
	it.State, it.ClaimedBy, it.LeaseExpiresAt = StateClaimed, reviewer, &exp
	it.touch(now)
	return nil
}

func (it *Item) leaseExpired(now time.Time) bool {
	return it.LeaseExpiresAt != nil && !now.Before(*it.LeaseExpiresAt)
}

// CheckRelease says whether reviewer may give the lease back.
func (it *Item) CheckRelease(reviewer string) error {
	switch {
	case !it.open():
		return ErrDecided
	case it.State != StateClaimed:
		return ErrNotClaimed
	case it.ClaimedBy != reviewer:
		return ErrNotHolder
	}
	return nil
}

// Release returns the item to the queue.
func (it *Item) Release(reviewer string, now time.Time) error {
	if err := it.CheckRelease(reviewer); err != nil {
		return err
	}
	it.unclaim(now)
	return nil
}

func (it *Item) unclaim(now time.Time) {
	it.State, it.ClaimedBy, it.LeaseExpiresAt = it.waitingState(), "", nil
	it.touch(now)
}

// ExpireLease returns the item to the queue if its lease has run out.
func (it *Item) ExpireLease(now time.Time) error {
	if it.State != StateClaimed {
		return ErrNotClaimed
	}
	if !it.leaseExpired(now) {
		return ErrLeaseActive
	}
	it.unclaim(now)
	return nil
}

// CheckDecide says whether reviewer may take decision r now: the item is
// open, the reviewer holds an unexpired lease, the version is current and
// the request is valid.
func (it *Item) CheckDecide(reviewer string, r Request, now time.Time) error {
	if err := r.Validate(it.Kind); err != nil {
		return err
	}
	switch {
	case !it.open():
		return ErrDecided
	case it.State != StateClaimed || it.ClaimedBy != reviewer:
		return ErrNotHolder
	case it.leaseExpired(now):
		return fmt.Errorf("%w: the lease expired at %s", ErrNotHolder, it.LeaseExpiresAt.Format(time.RFC3339))
	case r.Version != 0 && r.Version != it.Version:
		return fmt.Errorf("%w: decided on version %d, the item is at %d", ErrStale, r.Version, it.Version)
	}
	return nil
}

// Rules are the settings the state machine needs.
type Rules struct {
	// SecondOpinionAudience: a block of a video whose audience is over this
	// needs a second reviewer's agreement (0 turns second opinions off).
	SecondOpinionAudience int
}

// Outcome says what a decision did to the item.
type Outcome string

const (
	OutcomeApproved      Outcome = "approved"       // final: approve
	OutcomeBlocked       Outcome = "blocked"        // final: block
	OutcomeBlockProposed Outcome = "block_proposed" // a block waits for a second opinion
	OutcomeEscalated     Outcome = "escalated"      // escalated by hand or by a disagreement
)

// Final reports whether the item is decided after o.
func (o Outcome) Final() bool { return o == OutcomeApproved || o == OutcomeBlocked }

// Decide applies reviewer's decision. A block that needs a second opinion
// returns the item to the queue for someone else; a second reviewer who
// disagrees escalates it, and the next reviewer decides alone.
func (it *Item) Decide(reviewer string, r Request, now time.Time, rules Rules) (Outcome, error) {
	if err := it.CheckDecide(reviewer, r, now); err != nil {
		return "", err
	}
	d := Decision{Decision: r.Decision, ReasonCode: r.ReasonCode, Reason: strings.TrimSpace(r.Reason),
		Reviewer: reviewer, Version: it.Version, DecidedAt: now}
	it.Opinions = append(it.Opinions, d)
	var out Outcome
	switch {
	case r.Decision == Escalate:
		it.escalate()
		out = OutcomeEscalated
	case it.SecondOpinion && r.Decision == Block:
		// Agreement: the second reviewer confirms the first one's block.
		it.SecondOpinion = false
		out = OutcomeBlocked
	case it.SecondOpinion:
		// Disagreement: neither opinion stands alone; a third reviewer decides.
		it.SecondOpinion, it.Disputed = false, true
		it.escalate()
		out = OutcomeEscalated
	case r.Decision == Block && rules.SecondOpinionAudience > 0 && it.Audience > rules.SecondOpinionAudience && !it.Disputed:
		it.SecondOpinion = true
		out = OutcomeBlockProposed
	case r.Decision == Block:
		out = OutcomeBlocked
	default:
		out = OutcomeApproved
	}
	if out != OutcomeEscalated && out != OutcomeBlockProposed {
		it.State, it.ClaimedBy, it.LeaseExpiresAt, it.Decision = StateDecided, "", nil, &d
		it.touch(now)
		return out, nil
	}
	if !slices.Contains(it.Excluded, reviewer) {
		it.Excluded = append(it.Excluded, reviewer)
	}
	it.unclaim(now)
	return out, nil
}

// Escalate marks an open item escalated (its deadline passed): priority
// goes up and it stays in the queue. Escalating twice changes nothing.
func (it *Item) Escalate(now time.Time) bool {
	if !it.open() || it.Escalated {
		return false
	}
	it.escalate()
	if it.State != StateClaimed {
		it.State = StateEscalated
	}
	it.touch(now)
	return true
}

func (it *Item) escalate() {
	if !it.Escalated {
		it.Escalated = true
		it.BasePriority += EscalationBoost
	}
}

// ItemID names the item of one review workflow run: the same run always
// gives the same id, and a later run with the same workflow id (a new report
// after a decision) gives a new one.
func ItemID(workflowID, runID string) string {
	sum := sha256.Sum256([]byte(workflowID + "/" + runID))
	return "ri_" + hex.EncodeToString(sum[:10])
}

// AddReport adds a user report to an open item; the version changes, so a
// decision taken on the view before it is stale.
func (it *Item) AddReport(r Report, now time.Time) error {
	if !it.open() {
		return ErrDecided
	}
	it.Evidence.Reports = append(it.Evidence.Reports, r)
	it.touch(now)
	return nil
}
