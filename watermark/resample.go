package watermark

import "math"

// taps resamples one axis of nIn samples to nOut: a box filter with
// fractional end weights when shrinking (area average), linear
// interpolation when enlarging.
type taps struct {
	first []int32   // first input index per output
	n     []int32   // number of taps per output
	w     []float32 // weights, flattened; output i uses w[off[i]:off[i]+n[i]]
	off   []int32
}

func newTaps(nIn, nOut int) *taps {
	t := &taps{first: make([]int32, nOut), n: make([]int32, nOut), off: make([]int32, nOut)}
	s := float64(nIn) / float64(nOut)
	for i := 0; i < nOut; i++ {
		t.off[i] = int32(len(t.w))
		if s >= 1 {
			a, b := float64(i)*s, float64(i+1)*s
			first := int(math.Floor(a))
			last := min(int(math.Ceil(b))-1, nIn-1)
			t.first[i] = int32(first)
			for k := first; k <= last; k++ {
				lo, hi := math.Max(a, float64(k)), math.Min(b, float64(k+1))
				t.w = append(t.w, float32((hi-lo)/s))
			}
			t.n[i] = int32(last - first + 1)
			continue
		}
		c := (float64(i)+0.5)*s - 0.5
		k := int(math.Floor(c))
		f := c - float64(k)
		switch {
		case k < 0:
			t.first[i], t.n[i] = 0, 1
			t.w = append(t.w, 1)
		case k >= nIn-1:
			t.first[i], t.n[i] = int32(nIn-1), 1
			t.w = append(t.w, 1)
		default:
			t.first[i], t.n[i] = int32(k), 2
			t.w = append(t.w, float32(1-f), float32(f))
		}
	}
	return t
}

// resampler shrinks (or enlarges) a luma plane to the detection grid.
type resampler struct {
	srcW, srcH, dstW, dstH int
	h, v                   *taps
	tmp                    []float32 // srcH x dstW: the horizontal pass (enlarging)
	cols                   []float32 // dstH x srcW: the vertical pass (shrinking)
}

func newResampler(srcW, srcH, dstW, dstH int) *resampler {
	r := &resampler{srcW: srcW, srcH: srcH, dstW: dstW, dstH: dstH, h: newTaps(srcW, dstW), v: newTaps(srcH, dstH)}
	if dstH <= srcH {
		r.cols = make([]float32, dstH*srcW)
	} else {
		r.tmp = make([]float32, srcH*dstW)
	}
	return r
}

// run resamples f into dst (dstW x dstH). When shrinking, the vertical
// pass runs first, on the bytes: each of its taps is one long run over a
// row, and the horizontal pass then has dstH rows, not srcH.
func (r *resampler) run(f Frame, dst []float32) {
	if r.cols == nil {
		r.horizontal(f)
		r.vertical(dst)
		return
	}
	for y := 0; y < r.dstH; y++ {
		out := r.cols[y*r.srcW : y*r.srcW+r.srcW]
		first, n, off := int(r.v.first[y]), int(r.v.n[y]), int(r.v.off[y])
		row := func(k int) []byte { return f.Y[(first+k)*f.Stride : (first+k)*f.Stride+r.srcW] }
		w := r.v.w[off : off+n]
		// Taps two at a time: half the loads and stores of out.
		k := 0
		if n >= 2 {
			a, b := row(0), row(1)
			b, out = b[:len(a)], out[:len(a)]
			for x, p := range a {
				out[x] = w[0]*float32(p) + w[1]*float32(b[x])
			}
			k = 2
		} else {
			for x, p := range row(0) {
				out[x] = w[0] * float32(p)
			}
			k = 1
		}
		for ; k+1 < n; k += 2 {
			a, b := row(k), row(k+1)
			b, out = b[:len(a)], out[:len(a)]
			for x, p := range a {
				out[x] += w[k]*float32(p) + w[k+1]*float32(b[x])
			}
		}
		if k < n {
			a := row(k)
			out = out[:len(a)]
			for x, p := range a {
				out[x] += w[k] * float32(p)
			}
		}
	}
	for y := 0; y < r.dstH; y++ {
		tapRow(r.h, r.cols[y*r.srcW:y*r.srcW+r.srcW], dst[y*r.dstW:y*r.dstW+r.dstW])
	}
}

// tapRow is one row of the horizontal pass: each output sums its taps.
func tapRow[T byte | float32](t *taps, row []T, out []float32) {
	for x := range out {
		first, n, off := t.first[x], t.n[x], t.off[x]
		px := row[first : first+n]
		w := t.w[off : off+n]
		var s float32
		for k, p := range px {
			s += w[k] * float32(p)
		}
		out[x] = s
	}
}

// horizontal and vertical are run's passes in the other order (enlarging).
func (r *resampler) horizontal(f Frame) {
	for y := 0; y < r.srcH; y++ {
		tapRow(r.h, f.Y[y*f.Stride:y*f.Stride+r.srcW], r.tmp[y*r.dstW:y*r.dstW+r.dstW])
	}
}

func (r *resampler) vertical(dst []float32) {
	for y := 0; y < r.dstH; y++ {
		out := dst[y*r.dstW : y*r.dstW+r.dstW]
		clear(out)
		first, n, off := int(r.v.first[y]), int(r.v.n[y]), r.v.off[y]
		for k := 0; k < n; k++ {
			w := r.v.w[int(off)+k]
			src := r.tmp[(first+k)*r.dstW : (first+k)*r.dstW+r.dstW]
			for x, v := range src {
				out[x] += w * v
			}
		}
	}
}

// boxBlur writes the mean over a (2r+1)^2 window (clipped at the borders)
// of src (w x h) into dst, using tmp as scratch. Separable running sums.
func boxBlur(src, dst, tmp []float32, w, h, r int) {
	full := 2*r + 1
	inv := 1 / float32(full)
	for y := 0; y < h; y++ {
		row := src[y*w : y*w+w]
		out := tmp[y*w : y*w+w]
		var s float32
		lo, hi := 0, -1
		for x := 0; x < w; x++ {
			for hi < min(x+r, w-1) {
				hi++
				s += row[hi]
			}
			for lo < x-r {
				s -= row[lo]
				lo++
			}
			// A multiply where the window is whole: the division was
			// half of the detector's blur time.
			if n := hi - lo + 1; n == full {
				out[x] = s * inv
			} else {
				out[x] = s / float32(n)
			}
		}
	}
	col := make([]float32, w)
	cnt := 0
	lo, hi := 0, -1
	for y := 0; y < h; y++ {
		for hi < min(y+r, h-1) {
			hi++
			cnt++
			for x, v := range tmp[hi*w : hi*w+w] {
				col[x] += v
			}
		}
		for lo < y-r {
			for x, v := range tmp[lo*w : lo*w+w] {
				col[x] -= v
			}
			lo++
			cnt--
		}
		inv := 1 / float32(cnt)
		out := dst[y*w : y*w+w]
		for x, v := range col {
			out[x] = v * inv
		}
	}
}
