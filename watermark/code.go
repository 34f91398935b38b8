package watermark

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
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

// listViterbi is the parallel list Viterbi decoder: the n best paths
// through the trellis (distinct info words of nInfo bits, best first)
// under the correlation metric, n <= 256. With n = 1 it is the plain soft
// Viterbi decoder. With the keyed tag as the outer check, trying the next
// paths decodes marks whose best path has a few bit errors; each extra path
// is one more tag test (package doc: false alarms).
func listViterbi(soft []float64, nInfo, n int) [][]byte {
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
	// Per state, up to n path metrics, best first; back[t][state][i] is
	// entry i's predecessor state << 8 | its list index there.
	metric, next := make([]float64, convStates*n), make([]float64, convStates*n)
	count, nextCount := make([]int, convStates), make([]int, convStates)
	back := make([]uint16, steps*convStates*n)
	count[0] = 1 // the encoder starts in state 0
	mask := uint32(convStates - 1)
	for t := 0; t < steps; t++ {
		clear(nextCount)
		r := soft[t*convRate : t*convRate+convRate]
		maxIn := 2
		if t >= nInfo {
			maxIn = 1 // tail: zeros only
		}
		bk := back[t*convStates*n : (t+1)*convStates*n]
		for s := 0; s < convStates; s++ {
			for b := 0; b < maxIn; b++ {
				o := &outs[s][b]
				bm := o[0]*r[0] + o[1]*r[1] + o[2]*r[2]
				ns := int((uint32(s)<<1 | uint32(b)) & mask)
				nm, nb := next[ns*n:ns*n+n], bk[ns*n:ns*n+n]
				for i, m := range metric[s*n : s*n+count[s]] {
					m += bm
					// Insertion into the sorted list; entries come best first
					// per predecessor, so a miss ends that predecessor.
					k := nextCount[ns]
					if k == n && m <= nm[n-1] {
						break
					}
					if k < n {
						nextCount[ns]++
					} else {
						k = n - 1
					}
					for k > 0 && m > nm[k-1] {
						nm[k], nb[k] = nm[k-1], nb[k-1]
						k--
					}
					nm[k], nb[k] = m, uint16(s)<<8|uint16(i)
				}
			}
		}
		metric, next = next, metric
		count, nextCount = nextCount, count
	}
	// Trace back from state 0 (zero-terminated).
	paths := make([][]byte, count[0])
	for i := range paths {
		bits := make([]byte, steps)
		s, k := 0, i
		for t := steps - 1; t >= 0; t-- {
			bits[t] = byte(s & 1)
			e := back[(t*convStates+s)*n+k]
			s, k = int(e>>8), int(e&0xff)
		}
		paths[i] = bits[:nInfo]
	}
	return paths
}
