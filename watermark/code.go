package watermark

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math"
)

// Channel code. The 64 payload bits are followed by a 40-bit keyed tag
// (HMAC-SHA256 of the payload), then encoded with the K=7, rate-1/3
// convolutional code of LTE (generators 133, 171, 165 octal), zero-terminated,
// and decoded with a soft-decision Viterbi decoder.
const (
	payloadBits = 64
	tagBits     = 40
	infoBits    = payloadBits + tagBits // 104
	convK       = 7
	convStates  = 1 << (convK - 1)
	convRate    = 3
	codedBits   = (infoBits + convK - 1) * convRate // 330
)

var convGen = [convRate]uint32{0o133, 0o171, 0o165}

// tag is the keyed check: the first tagBits of HMAC-SHA256(secret, label||payload).
func tag(secret []byte, p Payload) uint64 {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("lessonflow-watermark/tag/v1"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(p))
	h.Write(b[:])
	sum := h.Sum(nil)
	return binary.BigEndian.Uint64(sum[:8]) >> (64 - tagBits)
}

// infoWord is payload (MSB first) then tag (MSB first), one bit per byte.
func infoWord(secret []byte, p Payload) []byte {
	bits := make([]byte, 0, infoBits)
	for i := payloadBits - 1; i >= 0; i-- {
		bits = append(bits, byte(uint64(p)>>uint(i)&1))
	}
	t := tag(secret, p)
	for i := tagBits - 1; i >= 0; i-- {
		bits = append(bits, byte(t>>uint(i)&1))
	}
	return bits
}

func parity(x uint32) byte {
	x ^= x >> 16
	x ^= x >> 8
	x ^= x >> 4
	x ^= x >> 2
	x ^= x >> 1
	return byte(x & 1)
}

// convEncode encodes info bits with K-1 zero tail bits.
func convEncode(info []byte) []byte {
	out := make([]byte, 0, (len(info)+convK-1)*convRate)
	var reg uint32
	emit := func(b byte) {
		reg = (reg<<1 | uint32(b)) & (1<<convK - 1)
		for _, g := range convGen {
			out = append(out, parity(reg&g))
		}
	}
	for _, b := range info {
		emit(b)
	}
	for i := 0; i < convK-1; i++ {
		emit(0)
	}
	return out
}

// viterbi decodes soft values (positive means coded bit 1, magnitude is
// confidence) into nInfo bits, maximizing the correlation sum.
func viterbi(soft []float64, nInfo int) []byte {
	steps := nInfo + convK - 1
	// Branch output symbols for state s (K-1 previous bits) and input b.
	var outs [convStates][2][convRate]float64
	for s := 0; s < convStates; s++ {
		for b := 0; b < 2; b++ {
			reg := uint32(s)<<1 | uint32(b)
			for j, g := range convGen {
				outs[s][b][j] = float64(2*int(parity(reg&g)) - 1)
			}
		}
	}
	metric := make([]float64, convStates)
	next := make([]float64, convStates)
	for i := range metric {
		metric[i] = math.Inf(-1)
	}
	metric[0] = 0
	prev := make([][convStates]uint8, steps) // predecessor state's dropped bit + input packed
	mask := uint32(convStates - 1)
	for t := 0; t < steps; t++ {
		for i := range next {
			next[i] = math.Inf(-1)
		}
		r := soft[t*convRate : t*convRate+convRate]
		maxIn := 2
		if t >= nInfo {
			maxIn = 1 // tail: zeros only
		}
		for s := 0; s < convStates; s++ {
			m := metric[s]
			if math.IsInf(m, -1) {
				continue
			}
			for b := 0; b < maxIn; b++ {
				o := &outs[s][b]
				bm := m + o[0]*r[0] + o[1]*r[1] + o[2]*r[2]
				ns := (uint32(s)<<1 | uint32(b)) & mask
				if bm > next[ns] {
					next[ns] = bm
					// Remember the predecessor's top bit (the one shifted out).
					prev[t][ns] = uint8(uint32(s) >> (convK - 2) & 1)
				}
			}
		}
		metric, next = next, metric
	}
	// Trace back from state 0 (zero-terminated).
	bits := make([]byte, steps)
	s := uint32(0)
	for t := steps - 1; t >= 0; t-- {
		bits[t] = byte(s & 1)
		top := uint32(prev[t][s])
		s = s>>1 | top<<(convK-2)
	}
	return bits[:nInfo]
}

// decodeInfo splits decoded info bits into payload and tag.
func decodeInfo(bits []byte) (Payload, uint64) {
	var p, t uint64
	for i := 0; i < payloadBits; i++ {
		p = p<<1 | uint64(bits[i])
	}
	for i := payloadBits; i < infoBits; i++ {
		t = t<<1 | uint64(bits[i])
	}
	return Payload(p), t
}
