package watermark

import (
	"math"
	"math/bits"
)

// fft2 is an in-place 2-D radix-2 FFT of an n x n complex array (row-major).
// The detector runs two 32x32 transforms per zoom searched, which makes
// this its hottest loop: the first two butterfly stages, whose twiddles are
// 1 and -i, are done without multiplies, each later stage reads its
// twiddles contiguously, and columns are transformed as rows of the
// transpose.
type fft2 struct {
	n   int
	rev []int
	// tw[d][s] are stage s's twiddles for direction d (0 forward, 1
	// inverse): exp(-+2 pi i k / size), k < size/2, size = 4 << s.
	tw [2][][]complex128
}

func newFFT2(n int) *fft2 {
	f := &fft2{n: n, rev: make([]int, n)}
	shift := 64 - bits.TrailingZeros(uint(n))
	for i := range f.rev {
		f.rev[i] = int(bits.Reverse64(uint64(i)) >> uint(shift))
	}
	for size := 8; size <= n; size <<= 1 {
		fw, iv := make([]complex128, size/2), make([]complex128, size/2)
		for k := range fw {
			a := -2 * math.Pi * float64(k) / float64(size)
			fw[k] = complex(math.Cos(a), math.Sin(a))
			iv[k] = complex(math.Cos(a), -math.Sin(a))
		}
		f.tw[0] = append(f.tw[0], fw)
		f.tw[1] = append(f.tw[1], iv)
	}
	return f
}

// fft1 transforms one row of n >= 4 values in place.
func (f *fft2) fft1(a []complex128, inverse bool) {
	n := f.n
	a = a[:n]
	for i, j := range f.rev {
		if i < j {
			a[i], a[j] = a[j], a[i]
		}
	}
	// Stages of size 2 and 4 together: twiddles 1 and -i (+i inverse).
	for s := 0; s+3 < n; s += 4 {
		b := a[s : s+4 : s+4]
		u0, v0 := b[0]+b[1], b[0]-b[1]
		u1, v1 := b[2]+b[3], b[2]-b[3]
		// v1 times -i (forward) or +i (inverse).
		if inverse {
			v1 = complex(-imag(v1), real(v1))
		} else {
			v1 = complex(imag(v1), -real(v1))
		}
		b[0], b[2] = u0+u1, u0-u1
		b[1], b[3] = v0+v1, v0-v1
	}
	d := 0
	if inverse {
		d = 1
	}
	for st, tw := range f.tw[d] {
		half := 4 << st
		size := 2 * half
		for start := 0; start < n; start += size {
			lo := a[start : start+half : start+half]
			hi := a[start+half : start+size : start+size]
			for k, w := range tw[:half] {
				u, v := lo[k], hi[k]*w
				lo[k], hi[k] = u+v, u-v
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
	transpose(a, n)
	for r := 0; r < n; r++ {
		f.fft1(a[r*n:r*n+n], inverse)
	}
	transpose(a, n)
}

func transpose(a []complex128, n int) {
	for r := 0; r < n; r++ {
		for c := r + 1; c < n; c++ {
			a[r*n+c], a[c*n+r] = a[c*n+r], a[r*n+c]
		}
	}
}
