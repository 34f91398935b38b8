package watermark

import (
	"math/rand"
	"testing"
)

func TestViterbiRoundTrip(t *testing.T) {
	secret := []byte("0123456789abcdef")
	r := rand.New(rand.NewSource(3))
	for i := 0; i < 50; i++ {
		p := Payload(r.Uint64())
		info := infoWord(secret, p)
		coded := convEncode(info)
		if len(coded) != codedBits {
			t.Fatalf("coded %d bits, want %d", len(coded), codedBits)
		}
		soft := make([]float64, len(coded))
		for j, c := range coded {
			soft[j] = float64(2*int(c)-1) + r.NormFloat64()*0.8
		}
		got, tg := decodeInfo(viterbi(soft, infoBits))
		if got != p || tg != tag(secret, p) {
			t.Fatalf("round %d: got %v want %v", i, got, p)
		}
	}
}
