package watermark

import (
	"math"
	"math/cmplx"
	"math/rand"
	"testing"
)

// TestFFT2 compares the transform with a direct 2-D DFT, both directions.
func TestFFT2(t *testing.T) {
	r := rand.New(rand.NewSource(9))
	for _, n := range []int{4, 8, 32, 64} {
		f := newFFT2(n)
		for _, inverse := range []bool{false, true} {
			a := make([]complex128, n*n)
			for i := range a {
				a[i] = complex(r.NormFloat64(), r.NormFloat64())
			}
			want := make([]complex128, n*n)
			sign := -1.0
			if inverse {
				sign = 1
			}
			for v := 0; v < n; v++ {
				for u := 0; u < n; u++ {
					var s complex128
					for y := 0; y < n; y++ {
						for x := 0; x < n; x++ {
							s += a[y*n+x] * cmplx.Exp(complex(0, sign*2*math.Pi*float64(u*x+v*y)/float64(n)))
						}
					}
					want[v*n+u] = s
				}
			}
			f.transform(a, inverse)
			for i := range a {
				if cmplx.Abs(a[i]-want[i]) > 1e-9*float64(n*n) {
					t.Fatalf("n %d inverse %v: bin %d is %v, want %v", n, inverse, i, a[i], want[i])
				}
			}
		}
	}
}
