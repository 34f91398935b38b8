package watermark

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Key is one watermark key. ID is a short printable name stored with every
// registry record (so keys can rotate); Secret seeds every keyed choice of
// the pattern and the check tag.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring holds the key new marks are made with (Current) and every key a
// detection tries (All, which includes Current).
type Keyring struct {
	Current Key
	All     []Key
}

// Limits on keys. MaxKeys bounds the decode attempts per detection, which the
// false-alarm bound depends on (see the package doc).
const (
	MinSecretBytes = 16
	MaxSecretBytes = 64
	MaxKeyIDLen    = 32
	MaxKeys        = 16
)

// Validate reports whether k is usable.
func (k Key) Validate() error {
	if k.ID == "" || len(k.ID) > MaxKeyIDLen {
		return fmt.Errorf("watermark key id %q: must be 1-%d characters", k.ID, MaxKeyIDLen)
	}
	for _, r := range k.ID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("watermark key id %q: only letters, digits, '-', '_' and '.' are allowed", k.ID)
		}
	}
	if len(k.Secret) < MinSecretBytes || len(k.Secret) > MaxSecretBytes {
		return fmt.Errorf("watermark key %s: secret is %d bytes, need %d-%d", k.ID, len(k.Secret), MinSecretBytes, MaxSecretBytes)
	}
	return nil
}

// ParseKeyring parses LESSONFLOW_WATERMARK_KEY: "id1:HEX,id2:HEX", the first
// key being the current one. Every secret is at least 16 bytes (32 hex digits).
func ParseKeyring(s string) (Keyring, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Keyring{}, errors.New("watermark keyring is empty: want \"id:HEXSECRET[,id2:HEXSECRET...]\"")
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxKeys {
		return Keyring{}, fmt.Errorf("watermark keyring has %d keys, at most %d allowed", len(parts), MaxKeys)
	}
	var kr Keyring
	seen := map[string]bool{}
	for i, part := range parts {
		part = strings.TrimSpace(part)
		id, hexSecret, ok := strings.Cut(part, ":")
		if !ok {
			return Keyring{}, fmt.Errorf("watermark keyring entry %d: want \"id:HEXSECRET\", got no ':'", i+1)
		}
		secret, err := hex.DecodeString(hexSecret)
		if err != nil {
			return Keyring{}, fmt.Errorf("watermark keyring entry %d (%s): secret is not hex: %w", i+1, strconv.Quote(id), err)
		}
		k := Key{ID: id, Secret: secret}
		if err := k.Validate(); err != nil {
			return Keyring{}, fmt.Errorf("watermark keyring entry %d: %w", i+1, err)
		}
		if seen[id] {
			return Keyring{}, fmt.Errorf("watermark keyring entry %d: duplicate key id %q", i+1, id)
		}
		seen[id] = true
		kr.All = append(kr.All, k)
	}
	kr.Current = kr.All[0]
	return kr, nil
}

// Payload is the 64 information bits a mark carries (a registry id).
type Payload uint64

// ParsePayload parses exactly 16 hex digits.
func ParsePayload(s string) (Payload, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("watermark payload %q: want exactly 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("watermark payload %q: want exactly 16 hex digits", s)
	}
	return Payload(v), nil
}

// String is the payload as 16 lowercase hex digits.
func (p Payload) String() string { return fmt.Sprintf("%016x", uint64(p)) }

// prng is a keyed deterministic stream: HMAC-SHA256(secret, label||counter).
// Without the secret its output is indistinguishable from random, so the
// pattern cannot be read or forged.
type prng struct {
	mac   []byte
	label string
	ctr   uint64
	buf   [32]byte
	pos   int
}

func newPRNG(secret []byte, label string) *prng {
	return &prng{mac: secret, label: label, pos: 32}
}

func (r *prng) next() byte {
	if r.pos == len(r.buf) {
		h := hmac.New(sha256.New, r.mac)
		h.Write([]byte(r.label))
		var c [8]byte
		binary.BigEndian.PutUint64(c[:], r.ctr)
		h.Write(c[:])
		h.Sum(r.buf[:0])
		r.ctr++
		r.pos = 0
	}
	b := r.buf[r.pos]
	r.pos++
	return b
}

func (r *prng) uint32() uint32 {
	return uint32(r.next())<<24 | uint32(r.next())<<16 | uint32(r.next())<<8 | uint32(r.next())
}

// intn is uniform in [0,n) (rejection sampling, no modulo bias).
func (r *prng) intn(n int) int {
	max := uint32(1<<32-1) - uint32(1<<32-1)%uint32(n)
	for {
		v := r.uint32()
		if v < max {
			return int(v % uint32(n))
		}
	}
}

func (r *prng) sign() float32 {
	if r.next()&1 == 0 {
		return -1
	}
	return 1
}
