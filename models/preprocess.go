package models

import (
	"fmt"
	"image"
	"image/color"
	"sync"
)

// Preprocess writes img as one NHWC image into dst, which must hold exactly
// p.Width*p.Height*3 values: the whole frame is resized (aspect ratio
// squashed, no crop) with bilinear align-corners sampling, and each channel
// value v in [0, 255] becomes (v*p.Scale - p.Mean[c]) / p.Std[c].
//
// Align-corners means output (y, x) samples the source at
// (y*(H-1)/(p.Height-1), x*(W-1)/(p.Width-1)), blending the 2x2 neighbours.
// This is tf.image.resizeBilinear(alignCorners=true), what nsfwjs and
// @tensorflow-models/mobilenet do and what the models were validated with.
// imaging's resamplers (and x/image/draw) are not used for this on purpose:
// they filter over the whole source footprint (area-weighted) and sample
// half-pixel centres, which shifts scores away from the reference values.
//
// Colour is 8-bit RGB. Translucent pixels are taken premultiplied, i.e.
// composited over black, which is what color.RGBAModel gives; every fast
// path matches that. Fast paths cover *image.RGBA, *image.NRGBA and
// *image.Gray; *image.YCbCr (image/jpeg's output) is converted per sampled
// pixel with color.YCbCrToRGB's integer math, bit-exact with draw.Draw into
// an *image.RGBA, without converting the whole frame first. Anything else
// goes through color.RGBAModel per sampled pixel.
//
// Empty Color and Resize mean RGB and align-corners; a nil Mean or Std means
// 0 and 1. Preprocess panics on an empty image, a wrong dst length or an
// unsupported Preprocessing, which are caller bugs (manifests are validated,
// and Classifier/Embedder reject empty images before getting here).
func Preprocess(img image.Image, p Preprocessing, dst []float32) {
	w, h := p.Width, p.Height
	if w < 1 || h < 1 {
		panic(fmt.Sprintf("models.Preprocess: output size %dx%d", w, h))
	}
	if len(dst) != w*h*3 {
		panic(fmt.Sprintf("models.Preprocess: len(dst) = %d, want %d", len(dst), w*h*3))
	}
	if (p.Color != "" && p.Color != ColorRGB) || (p.Resize != "" && p.Resize != ResizeBilinearAlignCorners) {
		panic(fmt.Sprintf("models.Preprocess: unsupported color %q / resize %q", p.Color, p.Resize))
	}
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw < 1 || sh < 1 {
		panic(fmt.Sprintf("models.Preprocess: empty image %v", b))
	}

	// out = v*mul + add folds scale, mean and std into one multiply-add.
	var mul, add [3]float32
	for c := range 3 {
		mean, std := float32(0), float32(1)
		if len(p.Mean) == 3 {
			mean = p.Mean[c]
		}
		if len(p.Std) == 3 {
			std = p.Std[c]
		}
		mul[c], add[c] = p.Scale/std, -mean/std
	}

	s := scratchPool.Get().(*scratch)
	defer func() {
		s.ycc = ycbcrRows{} // do not pin the frame in the pool
		scratchPool.Put(s)
	}()
	s.grow(w)
	taps := s.taps[:w]
	for x := range taps {
		taps[x] = tapAt(x, w, sw)
	}
	rows := rowSamplerFor(img, taps, s)

	// Two horizontally interpolated source rows; when downscaling, row y's
	// bottom source row is often row y+1's top one, so it is kept.
	buf0, buf1 := s.row0[:w*3], s.row1[:w*3]
	idx0, idx1 := -1, -1
	for y := range h {
		t := tapAt(y, h, sh)
		if t.i0 == idx1 {
			buf0, buf1, idx0, idx1 = buf1, buf0, idx1, idx0
		}
		if t.i0 != idx0 {
			rows.row(t.i0, taps, buf0)
			idx0 = t.i0
		}
		bot := buf0
		if t.i1 != t.i0 {
			if t.i1 != idx1 {
				rows.row(t.i1, taps, buf1)
				idx1 = t.i1
			}
			bot = buf1
		}
		out := dst[y*w*3 : (y+1)*w*3]
		top, bot := buf0[:len(out)], bot[:len(out)]
		for i := 0; i+2 < len(out); i += 3 {
			out[i] = lerp(top[i], bot[i], t.f)*mul[0] + add[0]
			out[i+1] = lerp(top[i+1], bot[i+1], t.f)*mul[1] + add[1]
			out[i+2] = lerp(top[i+2], bot[i+2], t.f)*mul[2] + add[2]
		}
	}
}

// tap is one align-corners sample position: blend source indices i0 and i1
// with weight f on i1.
type tap struct {
	i0, i1 int
	f      float32
}

// tapAt maps output index i of n onto a source axis of length src. Integer
// arithmetic keeps the position exact (TF computes it in float32, which can
// differ in the last bit of f; that is far below the model's tolerance).
func tapAt(i, n, src int) tap {
	if n == 1 || src == 1 {
		return tap{}
	}
	num, den := i*(src-1), n-1
	i0 := num / den
	return tap{i0: i0, i1: min(i0+1, src-1), f: float32(num%den) / float32(den)}
}

func lerp(a, b, f float32) float32 { return a + (b-a)*f }

// scratch holds per-call buffers, pooled because Preprocess runs per frame.
type scratch struct {
	taps       []tap
	cols       []int
	row0, row1 []float32
	ycc        ycbcrRows // kept here so the sampler does not escape per call
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) grow(w int) {
	if cap(s.taps) < w {
		s.taps = make([]tap, w)
		s.cols = make([]int, 2*w)
		s.row0 = make([]float32, w*3)
		s.row1 = make([]float32, w*3)
	}
}

// rowSampler writes source row sy (relative to the bounds' top), linearly
// interpolated at the horizontal taps, as raw 0..255 RGB into out.
type rowSampler interface {
	row(sy int, taps []tap, out []float32)
}

func rowSamplerFor(img image.Image, taps []tap, s *scratch) rowSampler {
	switch im := img.(type) {
	case *image.YCbCr:
		return newYCbCrRows(im, taps, s)
	case *image.RGBA:
		return rgbaRows{im}
	case *image.NRGBA:
		return nrgbaRows{im}
	case *image.Gray:
		return grayRows{im}
	}
	return genericRows{img}
}

type rgbaRows struct{ im *image.RGBA }

func (r rgbaRows) row(sy int, taps []tap, out []float32) {
	b := r.im.Rect
	px := r.im.Pix[r.im.PixOffset(b.Min.X, b.Min.Y+sy):]
	for i, t := range taps {
		p0, p1 := px[t.i0*4:t.i0*4+3:t.i0*4+3], px[t.i1*4:t.i1*4+3:t.i1*4+3]
		o := out[i*3 : i*3+3 : i*3+3]
		o[0] = lerp(float32(p0[0]), float32(p1[0]), t.f)
		o[1] = lerp(float32(p0[1]), float32(p1[1]), t.f)
		o[2] = lerp(float32(p0[2]), float32(p1[2]), t.f)
	}
}

type nrgbaRows struct{ im *image.NRGBA }

func (r nrgbaRows) row(sy int, taps []tap, out []float32) {
	b := r.im.Rect
	px := r.im.Pix[r.im.PixOffset(b.Min.X, b.Min.Y+sy):]
	for i, t := range taps {
		r0, g0, b0 := premultiplied(px[t.i0*4 : t.i0*4+4 : t.i0*4+4])
		r1, g1, b1 := premultiplied(px[t.i1*4 : t.i1*4+4 : t.i1*4+4])
		o := out[i*3 : i*3+3 : i*3+3]
		o[0] = lerp(float32(r0), float32(r1), t.f)
		o[1] = lerp(float32(g0), float32(g1), t.f)
		o[2] = lerp(float32(b0), float32(b1), t.f)
	}
}

// premultiplied returns what color.RGBAModel makes of an NRGBA pixel.
func premultiplied(p []uint8) (r, g, b uint8) {
	a := uint32(p[3])
	if a == 0xff {
		return p[0], p[1], p[2]
	}
	pm := func(c uint8) uint8 { return uint8(uint32(c) * 0x101 * a / 0xff >> 8) }
	return pm(p[0]), pm(p[1]), pm(p[2])
}

type grayRows struct{ im *image.Gray }

func (r grayRows) row(sy int, taps []tap, out []float32) {
	b := r.im.Rect
	px := r.im.Pix[r.im.PixOffset(b.Min.X, b.Min.Y+sy):]
	for i, t := range taps {
		v := lerp(float32(px[t.i0]), float32(px[t.i1]), t.f)
		out[i*3], out[i*3+1], out[i*3+2] = v, v, v
	}
}

// ycbcrRows converts only the sampled pixels: for a 1080p frame that is about
// 4x224x224 conversions instead of two million.
type ycbcrRows struct {
	im   *image.YCbCr
	vdiv int   // vertical chroma subsampling, as in (*image.YCbCr).COffset
	cols []int // chroma column of each tap's i0, i1 (pairs), precomputed once
}

func newYCbCrRows(im *image.YCbCr, taps []tap, s *scratch) *ycbcrRows {
	hdiv, vdiv := 1, 1
	switch im.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		hdiv = 2
	case image.YCbCrSubsampleRatio420:
		hdiv, vdiv = 2, 2
	case image.YCbCrSubsampleRatio440:
		vdiv = 2
	case image.YCbCrSubsampleRatio411:
		hdiv = 4
	case image.YCbCrSubsampleRatio410:
		hdiv, vdiv = 4, 2
	}
	minX := im.Rect.Min.X
	cols := s.cols[:2*len(taps)]
	for i, t := range taps {
		cols[2*i] = (minX+t.i0)/hdiv - minX/hdiv
		cols[2*i+1] = (minX+t.i1)/hdiv - minX/hdiv
	}
	s.ycc = ycbcrRows{im: im, vdiv: vdiv, cols: cols}
	return &s.ycc
}

func (r *ycbcrRows) row(sy int, taps []tap, out []float32) {
	im, b := r.im, r.im.Rect
	y := b.Min.Y + sy
	yRow := im.Y[(y-b.Min.Y)*im.YStride:]
	cOff := (y/r.vdiv - b.Min.Y/r.vdiv) * im.CStride
	cb, cr := im.Cb[cOff:], im.Cr[cOff:]
	cols := r.cols[:2*len(taps)]
	// color.YCbCrToRGB's integer math, written out: the function is too big
	// for the inliner and the call cost a third of this path's time.
	// TestYCbCrToRGBExact pins it bit-exact to the original.
	for i, t := range taps {
		y0, y1 := int32(yRow[t.i0])*0x10101, int32(yRow[t.i1])*0x10101
		c0, c1 := cols[2*i], cols[2*i+1]
		cb0, cr0 := int32(cb[c0])-128, int32(cr[c0])-128
		cb1, cr1 := int32(cb[c1])-128, int32(cr[c1])-128
		o := out[i*3 : i*3+3 : i*3+3]
		o[0] = lerp(clamp16(y0+91881*cr0), clamp16(y1+91881*cr1), t.f)
		o[1] = lerp(clamp16(y0-22554*cb0-46802*cr0), clamp16(y1-22554*cb1-46802*cr1), t.f)
		o[2] = lerp(clamp16(y0+116130*cb0), clamp16(y1+116130*cb1), t.f)
	}
}

// clamp16 is v>>16 clamped to [0, 255], as in color.YCbCrToRGB.
func clamp16(v int32) float32 {
	if uint32(v)&0xff000000 == 0 {
		return float32(v >> 16)
	}
	return float32(uint8(^(v >> 31)))
}

type genericRows struct{ im image.Image }

func (r genericRows) row(sy int, taps []tap, out []float32) {
	b := r.im.Bounds()
	at := func(x int) color.RGBA {
		return color.RGBAModel.Convert(r.im.At(b.Min.X+x, b.Min.Y+sy)).(color.RGBA)
	}
	for i, t := range taps {
		c0, c1 := at(t.i0), at(t.i1)
		o := out[i*3 : i*3+3 : i*3+3]
		o[0] = lerp(float32(c0.R), float32(c1.R), t.f)
		o[1] = lerp(float32(c0.G), float32(c1.G), t.f)
		o[2] = lerp(float32(c0.B), float32(c1.B), t.f)
	}
}
