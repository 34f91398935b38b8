package watermark

import (
	"math"
	"os"
	"strconv"
	"testing"
)

// TestISS is an embedding experiment (WM_ISS=1; WM_CLIP, WM_FRAMES,
// WM_ISS_LAMBDA, WM_ISS_MAX, WM_ISS_BLOCK, WM_ISS_ONE to read the host from
// each block's first frame only, WM_ISS_SYNC to cancel on the sync cells
// too, per cell): host-interference cancellation
// (improved spread spectrum). Per block of frames it reads the unmarked
// host's soft coded bits at the mark's reference geometry, and boosts the
// cells of each coded bit the host works against by enough to cancel lambda
// of that interference (at most WM_ISS_MAX times). Plain and boosted marks,
// made by the same per-pixel code, then go through the same encodes.
func TestISS(t *testing.T) {
	lambda, _ := strconv.ParseFloat(envOr("WM_ISS_LAMBDA", "1"), 64)
	amax, _ := strconv.ParseFloat(envOr("WM_ISS_MAX", "3"), 64)
	block, _ := strconv.Atoi(envOr("WM_ISS_BLOCK", "32"))
	syncToo := os.Getenv("WM_ISS_SYNC") != ""
	x := startExperiment(t, "WM_ISS", "Big_Buck_Bunny_1080_10s_2MB.mp4", 128)
	clip, n := x.clip, len(x.orig.frames) // the clip may be shorter than WM_FRAMES
	fr := strconv.FormatFloat(probeFPS(t, x.path), 'f', 3, 64)
	coded := convEncode(infoWord(x.kr.Current.Secret, x.p))
	l := newLayout(x.kr.Current)
	chips := l.chips(x.p)
	ones := make([]float64, codedBits)
	for i := range ones {
		ones[i] = 1
	}
	plain := x.orig.clone()
	for i := range plain.frames {
		markScaled(plain.luma(i), &chips, cellScale(l, ones))
	}
	d := NewDetector(x.kr)
	for i := 0; i < min(32, n); i++ {
		d.Add(plain.luma(i))
	}
	rf := d.refine(0, d.search(uniform)[0][0])
	iss := x.orig.clone()
	var boosted, sumA float64
	for b0 := 0; b0 < n; b0 += block {
		h, g := make([]float64, codedBits), make([]float64, codedBits)
		last := min(b0+block, n)
		if os.Getenv("WM_ISS_ONE") != "" { // the block's first frame only: what the pass could afford
			last = b0 + 1
		}
		var hc, gc [tileArea]float64 // per cell, for the sync cells
		for i := b0; i < last; i++ {
			_, hf := frameFold(x.kr, x.orig.luma(i), rf)
			_, mf := frameFold(x.kr, plain.luma(i), rf)
			hs, ms := softAt(l, hf, rf.bx, rf.by), softAt(l, mf, rf.bx, rf.by)
			for b := range h {
				h[b] += hs[b]
				g[b] += ms[b] - hs[b]
			}
			hcs, mcs := cellSums(hf, rf.bx, rf.by), cellSums(mf, rf.bx, rf.by)
			for c := range hc {
				hc[c] += hcs[c]
				gc[c] += mcs[c] - hcs[c]
			}
		}
		var gMean float64
		for b := range g {
			gMean += math.Abs(g[b]) / codedBits
		}
		a := make([]float64, codedBits)
		for b := range a {
			s := float64(2*int(coded[b]) - 1)
			against := math.Max(0, -h[b]*s)
			a[b] = math.Min(amax, 1+lambda*against/math.Max(g[b]*s, 0.25*gMean))
			if a[b] > 1 {
				boosted++
			}
			sumA += a[b]
		}
		scale := cellScale(l, a)
		if syncToo {
			var gMean float64
			for c := range gc {
				if l.bit[c] < 0 {
					gMean += math.Abs(gc[c]) / syncCells
				}
			}
			for c := range scale {
				if l.bit[c] < 0 {
					s := float64(l.sync[c])
					scale[c] = math.Min(amax, 1+lambda*math.Max(0, -hc[c]*s)/math.Max(gc[c]*s, 0.25*gMean))
				}
			}
		}
		for i := b0; i < min(b0+block, n); i++ {
			markScaled(iss.luma(i), &chips, scale)
		}
	}
	blocks := float64((n + block - 1) / block * codedBits)
	x264 := []string{"-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"}
	base := fileSizeOf(t, encode(t, x.orig, fr, x264...))
	for _, v := range []struct {
		name string
		c    *rawClip
	}{{"plain", plain}, {"iss", iss}} {
		rend := encode(t, v.c, fr, x264...)
		line := ""
		for _, codec := range [][]string{
			{"-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p"},
			{"-c:v", "libx265", "-preset", "ultrafast", "-crf", "28", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"},
		} {
			a := decodeRaw(t, encode(t, decodeRaw(t, rend, "", 0), fr, codec...), "", 0)
			ok, tot, snrs := x.windows(t, a, 32, nil)
			line += " " + codec[1] + " " + strconv.Itoa(ok) + "/" + strconv.Itoa(tot) + " SNR " + fmtFloats(snrs)
		}
		t.Logf("ISS %s %s lambda %g max %g block %d: PSNR %.2f size %+.1f%% boosted %.2f mean A %.2f;%s", clip, v.name, lambda, amax, block,
			psnrY(x.orig, v.c), 100*(float64(fileSizeOf(t, rend))/float64(base)-1), boosted/blocks, sumA/blocks, line)
	}
}

// cellScale is the per-cell scale for per-coded-bit scales a (sync cells 1).
func cellScale(l *layout, a []float64) [tileArea]float64 {
	var c [tileArea]float64
	for i := range c {
		c[i] = 1
		if l.bit[i] >= 0 {
			c[i] = a[l.bit[i]]
		}
	}
	return c
}

// markScaled marks f on the fine grid like MarkGrid, per pixel in floating
// point, with each cell's chip scaled by scale.
func markScaled(f Frame, chips *[tileArea]int8, scale [tileArea]float64) {
	g := newGeometry(f.Width, f.Height, GridFine)
	amp := blockAmplitudes(f, GridFine)
	var c [tileArea]float64
	for i := range c {
		c[i] = float64(chips[i]) * scale[i]
	}
	bw := (f.Width + maskBlock - 1) / maskBlock
	for y := 0; y < f.Height; y++ {
		ty0, wy := int(g.ty[y]), float64(g.wy[y])/256
		ty1 := (ty0 + 1) % tileCells
		for x := 0; x < f.Width; x++ {
			tx0, wx := int(g.tx[x]), float64(g.wx[x])/256
			tx1 := (tx0 + 1) % tileCells
			v := (1-wy)*((1-wx)*c[ty0*tileCells+tx0]+wx*c[ty0*tileCells+tx1]) +
				wy*((1-wx)*c[ty1*tileCells+tx0]+wx*c[ty1*tileCells+tx1])
			d := math.Round(v * float64(amp[(y/maskBlock)*bw+x/maskBlock]) / 16)
			i := y*f.Stride + x
			f.Y[i] = byte(min(max(float64(f.Y[i])+d, 0), 255))
		}
	}
}
