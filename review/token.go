package review

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrBadToken is returned (wrapped) for an evidence token that is malformed,
// forged or expired.
var ErrBadToken = errors.New("review: bad evidence token")

// EvidenceClaims is what an evidence token grants: one blob, blurred or
// sharp, to one reviewer, until Expires.
type EvidenceClaims struct {
	Key      string `json:"k"`
	Sharp    bool   `json:"s,omitempty"`
	Reviewer string `json:"r"`
	Expires  int64  `json:"e"` // Unix seconds
}

// MinSigningKey is the shortest accepted signing key in bytes.
const MinSigningKey = 32

// SignEvidence returns a URL-safe token: base64url(JSON claims) "."
// base64url(HMAC-SHA256(key, that first part)).
func SignEvidence(key []byte, c EvidenceClaims) (string, error) {
	if len(key) < MinSigningKey {
		return "", fmt.Errorf("sign evidence: key shorter than %d bytes", MinSigningKey)
	}
	if c.Key == "" || c.Expires == 0 {
		return "", fmt.Errorf("sign evidence: %w: empty key or expiry", ErrInvalid)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(b)
	return body + "." + base64.RawURLEncoding.EncodeToString(mac(key, body)), nil
}

// VerifyEvidence checks a token's signature (in constant time) and expiry.
func VerifyEvidence(key []byte, token string, now time.Time) (EvidenceClaims, error) {
	var c EvidenceClaims
	body, sig, ok := strings.Cut(token, ".")
	if !ok || body == "" || sig == "" || len(token) > 2048 {
		return c, fmt.Errorf("%w: malformed", ErrBadToken)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(key, body)) {
		return c, fmt.Errorf("%w: signature does not match", ErrBadToken)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || json.Unmarshal(raw, &c) != nil || c.Key == "" {
		return EvidenceClaims{}, fmt.Errorf("%w: malformed claims", ErrBadToken)
	}
	if now.Unix() >= c.Expires {
		return EvidenceClaims{}, fmt.Errorf("%w: expired at %s", ErrBadToken, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

func mac(key []byte, body string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("lessonflow-evidence-v1\n"))
	h.Write([]byte(body))
	return h.Sum(nil)
}
