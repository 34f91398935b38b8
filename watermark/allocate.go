package watermark

import (
	"math"
	"slices"
	"sync"
)

// Energy allocation between regions (GridFine; README, "Seventeenth
// round"). The detector weighs each sample of its grid by about 1/σ², σ the
// host's local deviation there after the high-pass (whitenInto: the sample
// divided by σ, then weighted by 1/σ). A smooth region's evidence therefore
// counts up to ten times a busy one's, while the mask (blockAmplitudes)
// gives busy blocks the most amplitude. allocate moves the mark's energy
// towards where the detector listens: each region of allocRegion² grid
// samples has its masked amplitudes scaled by the region's mean 1/σ²
// relative to the frame's (weighted by mark energy), clamped to
// [allocMin, allocMax] and interpolated between regions, and the frame's
// mark energy (so its PSNR) is kept. Inside a region the mask still grows
// with texture and never vanishes on flat blocks. On Big Buck Bunny at
// equal PSNR it lifts the median window's bit SNR after x264 CRF 28 from
// 0.71 to 0.96.
//
// In a video the weight also falls where the picture moves (README,
// "Nineteenth round"): a region's weight is divided by 1+(m/allocMotion)²,
// m its mean absolute change, at the detector's grid, since the previous
// block's first frame. The pattern stays put while the picture moves, so
// there the encoder pays for the pattern's difference in every predicted
// frame, and a re-encode smears what it keeps. On Big Buck Bunny that takes
// a sixth to a fifth off the mark's bitrate cost at the same bit SNR.
//
// They are variables for the experiments (WM_ALLOC_REGION, WM_ALLOC_MIN,
// WM_ALLOC_MAX; README, "Eighteenth round": a wider clamp reads more at
// 720p and 540p but strays further from the mask's rule).
var (
	allocRegion = 16 // grid samples: 80 px at 1080p, 32 px at 432p
	allocMin    = 0.5
	allocMax    = 1.5
	allocMotion = 3.0 // luma levels; 0 turns the motion term off (WM_ALLOC_MOTION)
)

// allocOff turns the allocation off (the experiments' comparison).
var allocOff = false

// allocScratch is allocate's working memory for one frame size, pooled:
// a fresh 2 MB per single image (MarkGrid) cost about as much as the
// resample itself.
type allocScratch struct {
	rs                  *resampler
	base, blur, tmp, sq []float32
}

var allocScratchPool sync.Pool

// allocate scales amp (the mask of f, per 16x16 block) in place by its
// region's detector weight, keeping the sum of squares. It returns the
// per-block scales so that the other frames of a block of frames can take
// the same ones (applyScales): the pattern stays fixed while the picture
// moves a little. prev is the previous block's first frame at the
// detector's grid (nil: none, as for a single image or the first block of
// a segment); with keep, host is f's, for the next block.
func allocate(f Frame, amp []int32, prev []float32, keep bool) (scale, host []float32) {
	if allocOff {
		return nil, nil
	}
	gw := gridW
	gh := max(1, int(math.Round(float64(gw)*float64(f.Height)/float64(f.Width))))
	s, _ := allocScratchPool.Get().(*allocScratch)
	if s == nil || s.rs.srcW != f.Width || s.rs.srcH != f.Height || s.rs.dstH != gh {
		n := gw * gh
		s = &allocScratch{rs: newResampler(f.Width, f.Height, gw, gh),
			base: make([]float32, n), blur: make([]float32, n), tmp: make([]float32, n), sq: make([]float32, n)}
	}
	defer allocScratchPool.Put(s)
	s.rs.run(f, s.base)
	rw, rh := (gw+allocRegion-1)/allocRegion, (gh+allocRegion-1)/allocRegion
	region := func(i int) int { return (i/gw/allocRegion)*rw + (i%gw)/allocRegion }
	if keep {
		host = slices.Clone(s.base)
	}
	// Motion on the picture itself, not on its high-pass: measured on the
	// high-pass, it took half as much off the cost (README).
	var motion []float64
	if len(prev) == len(s.base) && allocMotion > 0 {
		motion = make([]float64, rw*rh)
		for i, v := range s.base {
			motion[region(i)] += math.Abs(float64(v - prev[i]))
		}
	}
	variance := highPassVar(s.base, s.blur, s.tmp, s.sq, gw, gh)
	weight, samples := make([]float64, rw*rh), make([]float64, rw*rh)
	for i, v := range variance {
		r := region(i)
		weight[r] += 1 / (float64(v) + varFloor)
		samples[r]++
	}
	for r := range weight {
		weight[r] /= max(samples[r], 1)
	}
	if motion != nil {
		for r, m := range motion {
			m /= max(samples[r], 1) * allocMotion
			weight[r] /= 1 + m*m
		}
	}
	// A region's scale is its weight over the mean weight, where the mean
	// weighs each mask block (of the region holding its centre) by its
	// mark energy. Blocks take the scales interpolated bilinearly between
	// region centres: no step in the mark's strength at a region's edge.
	bw := (f.Width + maskBlock - 1) / maskBlock
	sx, sy := float64(gw)/float64(f.Width), float64(gh)/float64(f.Height)
	centre := func(b int) (gx, gy float64) {
		return (float64(b%bw*maskBlock) + maskBlock/2) * sx, (float64(b/bw*maskBlock) + maskBlock/2) * sy
	}
	var energy, mean float64
	for b, a := range amp {
		gx, gy := centre(b)
		e := float64(a) * float64(a)
		energy += e
		mean += e * weight[min(rh-1, int(gy)/allocRegion)*rw+min(rw-1, int(gx)/allocRegion)]
	}
	if energy == 0 || mean == 0 {
		return nil, host
	}
	mean /= energy
	k := make([]float64, len(weight))
	for r, w := range weight {
		k[r] = min(allocMax, max(allocMin, w/mean))
	}
	lerp := func(v float64, n int) (i0, i1 int, f float64) {
		v = min(float64(n-1), max(0, v/float64(allocRegion)-0.5))
		i0 = int(v)
		return i0, min(n-1, i0+1), v - float64(i0)
	}
	scale = make([]float32, len(amp))
	var scaled float64
	for b, a := range amp {
		gx, gy := centre(b)
		x0, x1, fx := lerp(gx, rw)
		y0, y1, fy := lerp(gy, rh)
		v := (1-fy)*((1-fx)*k[y0*rw+x0]+fx*k[y0*rw+x1]) + fy*((1-fx)*k[y1*rw+x0]+fx*k[y1*rw+x1])
		scale[b] = float32(v)
		scaled += float64(a) * float64(a) * v * v
	}
	norm := float32(math.Sqrt(energy / scaled))
	for b := range scale {
		scale[b] *= norm
	}
	applyScales(amp, scale)
	return scale, host
}

// applyScales multiplies amp by scale (nil: unchanged).
func applyScales(amp []int32, scale []float32) {
	if len(scale) != len(amp) {
		return
	}
	for b, k := range scale {
		amp[b] = int32(float32(amp[b])*k + 0.5)
	}
}
