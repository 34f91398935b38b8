package review

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func newItem(kind Kind, audience int) *Item {
	return &Item{ID: "ri1", VideoID: "v1", Kind: kind, State: StatePending, Audience: audience, Version: 1, CreatedAt: t0}
}

func TestClaimLeaseRelease(t *testing.T) {
	it := newItem(KindModel, 0)
	if err := it.Claim("alice", t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if it.State != StateClaimed || it.ClaimedBy != "alice" || !it.LeaseExpiresAt.Equal(t0.Add(time.Minute)) || it.Version != 2 {
		t.Fatalf("after claim: %+v", it)
	}
	if err := it.Claim("bob", t0.Add(30*time.Second), time.Minute); !errors.Is(err, ErrClaimed) {
		t.Fatalf("bob claims a held item: %v", err)
	}
	if err := it.Release("bob", t0); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("bob releases alice's lease: %v", err)
	}
	if err := it.ExpireLease(t0.Add(59 * time.Second)); !errors.Is(err, ErrLeaseActive) {
		t.Fatalf("early expiry: %v", err)
	}
	if err := it.ExpireLease(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if it.State != StatePending || it.ClaimedBy != "" || it.LeaseExpiresAt != nil {
		t.Fatalf("after expiry: %+v", it)
	}
	// Renewal by the holder, then release.
	if err := it.Claim("bob", t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := it.Claim("bob", t0.Add(50*time.Second), time.Minute); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if !it.LeaseExpiresAt.Equal(t0.Add(110 * time.Second)) {
		t.Fatalf("renewed lease ends %v", it.LeaseExpiresAt)
	}
	if err := it.Release("bob", t0); err != nil || it.State != StatePending {
		t.Fatalf("release: %v %+v", err, it)
	}
	// An expired lease can be taken over before the timer fires.
	_ = it.Claim("alice", t0, time.Minute)
	if err := it.Claim("bob", t0.Add(2*time.Minute), time.Minute); err != nil {
		t.Fatalf("take over an expired lease: %v", err)
	}
}

func TestDecideChecks(t *testing.T) {
	it := newItem(KindModel, 0)
	block := Request{Decision: Block, ReasonCode: "nudity", Reason: "visible at 0:06"}
	if _, err := it.Decide("alice", block, t0, Rules{}); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("decide without a lease: %v", err)
	}
	_ = it.Claim("alice", t0, time.Minute)
	if _, err := it.Decide("bob", block, t0, Rules{}); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("decide by a non-holder: %v", err)
	}
	stale := block
	stale.Version = 1
	if _, err := it.Decide("alice", stale, t0, Rules{}); !errors.Is(err, ErrStale) {
		t.Fatalf("decide on a stale version: %v", err)
	}
	for _, bad := range []Request{
		{Decision: "delete"},
		{Decision: Block, Reason: "no code"},
		{Decision: Block, ReasonCode: "x"},
		{Decision: Approve, ReasonCode: "Bad Code"},
		{Decision: Approve, Reason: strings.Repeat("x", MaxReasonLen+1)},
	} {
		if _, err := it.Decide("alice", bad, t0, Rules{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := it.Decide("alice", block, t0.Add(time.Minute), Rules{}); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("decide after the lease ran out: %v", err)
	}
	ok := block
	ok.Version = it.Version
	out, err := it.Decide("alice", ok, t0.Add(time.Second), Rules{})
	if err != nil || out != OutcomeBlocked || it.State != StateDecided || it.Decision.Reviewer != "alice" {
		t.Fatalf("decide: %v %v %+v", out, err, it)
	}
	if _, err := it.Decide("alice", ok, t0, Rules{}); !errors.Is(err, ErrDecided) {
		t.Fatalf("decide twice: %v", err)
	}
	if err := it.Claim("bob", t0, time.Minute); !errors.Is(err, ErrDecided) {
		t.Fatalf("claim a decided item: %v", err)
	}
}

func TestSecondOpinion(t *testing.T) {
	rules := Rules{SecondOpinionAudience: 100}
	block := Request{Decision: Block, ReasonCode: "violence", Reason: "fight scene"}

	small := newItem(KindModel, 100)
	_ = small.Claim("alice", t0, time.Minute)
	if out, _ := small.Decide("alice", block, t0, rules); out != OutcomeBlocked {
		t.Fatalf("audience at the limit: %v, want blocked at once", out)
	}

	it := newItem(KindModel, 101)
	_ = it.Claim("alice", t0, time.Minute)
	out, err := it.Decide("alice", block, t0, rules)
	if err != nil || out != OutcomeBlockProposed || it.State != StatePending || !it.SecondOpinion {
		t.Fatalf("first block: %v %v %+v", out, err, it)
	}
	if err := it.Claim("alice", t0, time.Minute); !errors.Is(err, ErrExcluded) {
		t.Fatalf("the first reviewer claims again: %v", err)
	}
	_ = it.Claim("bob", t0, time.Minute)
	out, _ = it.Decide("bob", block, t0, rules)
	if out != OutcomeBlocked || it.State != StateDecided || len(it.Opinions) != 2 {
		t.Fatalf("agreement: %v %+v", out, it)
	}

	// Disagreement escalates; a third reviewer's block is final.
	it = newItem(KindModel, 500)
	_ = it.Claim("alice", t0, time.Minute)
	_, _ = it.Decide("alice", block, t0, rules)
	_ = it.Claim("bob", t0, time.Minute)
	out, _ = it.Decide("bob", Request{Decision: Approve}, t0, rules)
	if out != OutcomeEscalated || it.State != StateEscalated || !it.Escalated {
		t.Fatalf("disagreement: %v %+v", out, it)
	}
	if err := it.Claim("bob", t0, time.Minute); !errors.Is(err, ErrExcluded) {
		t.Fatalf("the second reviewer claims again: %v", err)
	}
	_ = it.Claim("carol", t0, time.Minute)
	if out, _ := it.Decide("carol", block, t0, rules); out != OutcomeBlocked {
		t.Fatalf("third reviewer: %v", out)
	}
}

func TestEscalate(t *testing.T) {
	it := newItem(KindModel, 0)
	base := it.BasePriority
	if !it.Escalate(t0) || it.State != StateEscalated || it.BasePriority != base+EscalationBoost {
		t.Fatalf("escalate: %+v", it)
	}
	if it.Escalate(t0) {
		t.Fatal("escalated twice")
	}
	_ = it.Claim("alice", t0, time.Minute)
	_ = it.Release("alice", t0)
	if it.State != StateEscalated {
		t.Fatalf("released escalated item is %s", it.State)
	}
	// By hand.
	it = newItem(KindReport, 0)
	_ = it.Claim("alice", t0, time.Minute)
	if out, err := it.Decide("alice", Request{Decision: Escalate}, t0, Rules{}); out != OutcomeEscalated || err != nil || it.State != StateEscalated {
		t.Fatalf("escalate by hand: %v %v %+v", out, err, it)
	}
}

func TestAppealNeedsReasons(t *testing.T) {
	it := newItem(KindAppeal, 0)
	it.Excluded = []string{"alice"}
	if err := it.Claim("alice", t0, time.Minute); !errors.Is(err, ErrExcluded) {
		t.Fatalf("the blocking reviewer claims the appeal: %v", err)
	}
	_ = it.Claim("bob", t0, time.Minute)
	if _, err := it.Decide("bob", Request{Decision: Approve}, t0, Rules{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("appeal answer without reasons: %v", err)
	}
	if out, err := it.Decide("bob", Request{Decision: Approve, Reason: "a medical lesson, not nudity"}, t0, Rules{}); out != OutcomeApproved || err != nil {
		t.Fatalf("appeal approved: %v %v", out, err)
	}
}

func TestPriority(t *testing.T) {
	low := BasePriority(PriorityInput{Kind: KindModel, TopScore: 0.3})
	high := BasePriority(PriorityInput{Kind: KindModel, TopScore: 0.9})
	if !(high > low) {
		t.Fatalf("score: %v !> %v", high, low)
	}
	hist := BasePriority(PriorityInput{Kind: KindModel, TopScore: 0.3, UploaderBlocked: 3, UploaderTotal: 4})
	aud := BasePriority(PriorityInput{Kind: KindModel, TopScore: 0.3, Audience: 10000})
	if !(hist > low && aud > low) {
		t.Fatalf("history %v, audience %v, plain %v", hist, aud, low)
	}
	if got := BasePriority(PriorityInput{TopScore: 7, Audience: -5}); got != WeightScore {
		t.Fatalf("clamped: %v", got)
	}
	// Waiting: an old low item overtakes a new higher one, and ranks agree
	// with priorities at every instant.
	oldC, newC := t0, t0.Add(20*time.Hour)
	for _, now := range []time.Time{newC, newC.Add(time.Hour), newC.Add(100 * time.Hour)} {
		pOld, pNew := Priority(low, oldC, now), Priority(high, newC, now)
		rOld, rNew := Rank(low, oldC), Rank(high, newC)
		if (pOld > pNew) != (rOld > rNew) {
			t.Fatalf("at %v priorities %v/%v but ranks %v/%v", now, pOld, pNew, rOld, rNew)
		}
		if got := PriorityFromRank(rOld, now); got != pOld {
			t.Fatalf("priority from rank %v, want %v", got, pOld)
		}
	}
	if Priority(low, oldC, newC) <= Priority(high, newC, newC) {
		t.Fatal("20 h of waiting did not lift the low item over the new one")
	}
}

func TestEvidenceToken(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	c := EvidenceClaims{Key: "evidence/v1/seg-0.jpg", Reviewer: "rk_1", Expires: t0.Add(time.Minute).Unix()}
	tok, err := SignEvidence(key, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyEvidence(key, tok, t0)
	if err != nil || got != c {
		t.Fatalf("verify: %+v %v", got, err)
	}
	if _, err := VerifyEvidence(key, tok, t0.Add(time.Minute)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := VerifyEvidence([]byte(strings.Repeat("x", 32)), tok, t0); !errors.Is(err, ErrBadToken) {
		t.Fatalf("other key: %v", err)
	}
	// Flip the claims to sharp without re-signing.
	body, sig, _ := strings.Cut(tok, ".")
	forged, _ := SignEvidence(key, EvidenceClaims{Key: c.Key, Sharp: true, Reviewer: "rk_1", Expires: c.Expires})
	fbody, _, _ := strings.Cut(forged, ".")
	if _, err := VerifyEvidence(key, fbody+"."+sig, t0); !errors.Is(err, ErrBadToken) {
		t.Fatalf("forged claims: %v", err)
	}
	for _, bad := range []string{"", "abc", body + ".", "." + sig, body + ".%%%"} {
		if _, err := VerifyEvidence(key, bad, t0); !errors.Is(err, ErrBadToken) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := SignEvidence([]byte("short"), c); err == nil {
		t.Fatal("short key accepted")
	}
}
