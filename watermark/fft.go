package watermark

import (
	"math"
	"math/bits"
)

// fft2 is an in-place 2-D radix-2 FFT of an n x n complex array (row-major).
type fft2 struct {
	n       int
	rev     []int
	twiddle []complex128
	inv     []complex128 // conjugate twiddles for the inverse
	col     []complex128
}

func newFFT2(n int) *fft2 {
	f := &fft2{n: n, rev: make([]int, n), twiddle: make([]complex128, n/2), inv: make([]complex128, n/2), col: make([]complex128, n)}
	shift := 64 - bits.TrailingZeros(uint(n))
	for i := range f.rev {
		f.rev[i] = int(bits.Reverse64(uint64(i)) >> uint(shift))
	}
	for i := range f.twiddle {
		a := -2 * math.Pi * float64(i) / float64(n)
		f.twiddle[i] = complex(math.Cos(a), math.Sin(a))
		f.inv[i] = complex(math.Cos(a), -math.Sin(a))
	}
	return f
}

func (f *fft2) fft1(a []complex128, inverse bool) {
	n := f.n
	for i, j := range f.rev {
		if i < j {
			a[i], a[j] = a[j], a[i]
		}
	}
	tw := f.twiddle
	if inverse {
		tw = f.inv
	}
	for size := 2; size <= n; size <<= 1 {
		half := size / 2
		step := n / size
		for start := 0; start < n; start += size {
			for k := 0; k < half; k++ {
				w := tw[k*step]
				u := a[start+k]
				v := a[start+k+half] * w
				a[start+k] = u + v
				a[start+k+half] = u - v
			}
		}
	}
}

// transform runs the 2-D transform (unnormalized in both directions).
func (f *fft2) transform(a []complex128, inverse bool) {
	n := f.n
	for r := 0; r < n; r++ {
		f.fft1(a[r*n:r*n+n], inverse)
	}
	for c := 0; c < n; c++ {
		for r := 0; r < n; r++ {
			f.col[r] = a[r*n+c]
		}
		f.fft1(f.col, inverse)
		for r := 0; r < n; r++ {
			a[r*n+c] = f.col[r]
		}
	}
}
