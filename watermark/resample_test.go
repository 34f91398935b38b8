package watermark

import (
	"math"
	"math/rand"
	"testing"
)

// TestResampleOrder checks the vertical-first pass run takes when
// shrinking against the horizontal-first one, on sizes with whole and
// fractional ratios, a frame narrower than the grid and a stride wider
// than the frame: the two orders are the same separable filter.
func TestResampleOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, sz := range [][4]int{{1920, 1080, 384, 216}, {1280, 720, 384, 216}, {641, 361, 384, 216},
		{768, 432, 384, 216}, {192, 768, 384, 1536 / 4}, {8192, 2048, 384, 96}, {384, 216, 384, 216}} {
		w, h, dw, dh := sz[0], sz[1], sz[2], sz[3]
		f := Frame{Width: w, Height: h, Stride: w + 3, Y: make([]byte, (w+3)*h)}
		for i := range f.Y {
			f.Y[i] = byte(rng.Intn(256))
		}
		fast := newResampler(w, h, dw, dh)
		if fast.cols == nil {
			t.Fatalf("%dx%d -> %dx%d: not the vertical-first pass", w, h, dw, dh)
		}
		slow := &resampler{srcW: w, srcH: h, dstW: dw, dstH: dh, h: fast.h, v: fast.v, tmp: make([]float32, h*dw)}
		a, b := make([]float32, dw*dh), make([]float32, dw*dh)
		fast.run(f, a)
		slow.run(f, b)
		var worst float64
		for i := range a {
			worst = max(worst, math.Abs(float64(a[i]-b[i])))
		}
		// Both are weighted means of bytes: float32 rounding stays far
		// below 1e-3, a wrong tap or row far above.
		if worst > 1e-3 {
			t.Errorf("%dx%d -> %dx%d: the two orders differ by %g", w, h, dw, dh, worst)
		}
	}
}

// BenchmarkResample1080p times the resample to the detection grid at
// 1920x1080, in both pass orders side by side.
func BenchmarkResample1080p(b *testing.B) {
	f := naturalFrame(1920, 1080, 3)
	dst := make([]float32, gridW*216)
	fast := newResampler(1920, 1080, gridW, 216)
	slow := &resampler{srcW: 1920, srcH: 1080, dstW: gridW, dstH: 216, h: fast.h, v: fast.v, tmp: make([]float32, 1080*gridW)}
	b.Run("horizontal-first", func(b *testing.B) {
		for b.Loop() {
			slow.run(f, dst)
		}
	})
	b.Run("vertical-first", func(b *testing.B) {
		for b.Loop() {
			fast.run(f, dst)
		}
	})
}

// TestBoxBlur checks the running sums against the window means computed
// directly, whole windows and clipped ones (planes narrower than the
// window included).
func TestBoxBlur(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, c := range [][3]int{{384, 216, 2}, {384, 216, 4}, {7, 5, 4}, {1, 9, 2}} {
		w, h, r := c[0], c[1], c[2]
		src := make([]float32, w*h)
		for i := range src {
			src[i] = float32(rng.NormFloat64() * 40)
		}
		dst, tmp := make([]float32, w*h), make([]float32, w*h)
		boxBlur(src, dst, tmp, w, h, r)
		for y := range h {
			for x := range w {
				var s float64
				n := 0
				for yy := max(0, y-r); yy <= min(h-1, y+r); yy++ {
					for xx := max(0, x-r); xx <= min(w-1, x+r); xx++ {
						s += float64(src[yy*w+xx])
						n++
					}
				}
				if d := math.Abs(float64(dst[y*w+x]) - s/float64(n)); d > 1e-3 {
					t.Fatalf("%dx%d r=%d: (%d,%d) is %g, the window's mean %g", w, h, r, x, y, dst[y*w+x], s/float64(n))
				}
			}
		}
	}
}
