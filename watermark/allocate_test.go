package watermark

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// halfBusy is a w x h frame, smooth grey on one half and on the other
// 24-px squares of random levels, which the detector's grid sees as busy.
func halfBusy(w, h int, busyRight bool, seed uint64) Frame {
	r := rand.New(rand.NewPCG(seed, 2))
	f := Frame{Y: make([]byte, w*h), Width: w, Height: h, Stride: w}
	levels := make([]byte, (w/24+1)*(h/24+1))
	for i := range levels {
		levels[i] = byte(60 + r.IntN(136))
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := byte(110 + x*20/w) // a gentle ramp
			if (x >= w/2) == busyRight {
				v = levels[(y/24)*(w/24+1)+x/24]
			}
			f.Y[y*w+x] = v
		}
	}
	return f
}

// halvesEnergy is the squared mark (marked - orig) on the left and right
// halves of a frame.
func halvesEnergy(orig, marked Frame) (left, right float64) {
	for y := 0; y < orig.Height; y++ {
		for x := 0; x < orig.Width; x++ {
			d := float64(marked.Y[y*marked.Stride+x]) - float64(orig.Y[y*orig.Stride+x])
			if x < orig.Width/2 {
				left += d * d
			} else {
				right += d * d
			}
		}
	}
	return left, right
}

func cloneFrame(f Frame) Frame {
	f.Y = append([]byte(nil), f.Y...)
	return f
}

// TestAllocate: the mask's energy moves to the half the detector weighs
// most (the smooth one), its total stays, and no block loses its mark.
func TestAllocate(t *testing.T) {
	for _, size := range [][2]int{{1920, 1080}, {768, 432}} {
		f := halfBusy(size[0], size[1], true, 1)
		amp := blockAmplitudes(f, GridFine)
		before := append([]int32(nil), amp...)
		scale, _ := allocate(f, amp, nil, false)
		if len(scale) != len(amp) {
			t.Fatalf("%dx%d: %d scales for %d blocks", size[0], size[1], len(scale), len(amp))
		}
		bw := (f.Width + maskBlock - 1) / maskBlock
		var e0, e1, smooth, busy, ns, nb float64
		for b := range amp {
			e0 += float64(before[b]) * float64(before[b])
			e1 += float64(amp[b]) * float64(amp[b])
			if amp[b] <= 0 {
				t.Fatalf("%dx%d: block %d lost its mark (%d -> %d)", size[0], size[1], b, before[b], amp[b])
			}
			// Away from the boundary between the halves.
			switch x := (b % bw) * maskBlock; {
			case x < f.Width/2-100:
				smooth += float64(scale[b])
				ns++
			case x > f.Width/2+100:
				busy += float64(scale[b])
				nb++
			}
		}
		if r := e1 / e0; r < 0.98 || r > 1.02 {
			t.Errorf("%dx%d: the mask's energy changed %.3f times", size[0], size[1], r)
		}
		smooth, busy = smooth/ns, busy/nb
		t.Logf("%dx%d: mean scale smooth %.2f, busy %.2f", size[0], size[1], smooth, busy)
		if smooth < 1.5*busy {
			t.Errorf("%dx%d: smooth half scaled %.2f, busy half %.2f; want the smooth half to get more", size[0], size[1], smooth, busy)
		}
	}
}

// TestAllocationPerBlock: a video's frames take the allocation of their
// block's first frame, as they take its pattern; a frame of a new block
// takes its own. MarkGrid allocates each image by itself.
func TestAllocationPerBlock(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	const w, h = 1280, 720
	smoothLeft, smoothRight := halfBusy(w, h, true, 1), halfBusy(w, h, false, 1)
	m := e.Video(Payload(0xa110c), GridFine, 0)
	check := func(name string, orig, marked Frame, wantLeft bool) {
		t.Helper()
		l, r := halvesEnergy(orig, marked)
		t.Logf("%s: mark energy left %.0f, right %.0f", name, l, r)
		if (l > r) != wantLeft {
			t.Errorf("%s: mark energy left %.0f, right %.0f; want more on the %s", name, l, r, map[bool]string{true: "left", false: "right"}[wantLeft])
		}
	}
	for i, c := range []struct {
		index    int
		f        Frame
		wantLeft bool
	}{
		{0, smoothLeft, true},
		{1, smoothRight, true}, // block 0: frame 0's allocation
		{cancelBlock, smoothRight, false},
		{cancelBlock + 1, smoothLeft, false},
	} {
		marked := cloneFrame(c.f)
		if err := m.Mark(context.Background(), marked, c.index); err != nil {
			t.Fatal(err)
		}
		check("frame "+strconv.Itoa(c.index)+" (case "+strconv.Itoa(i)+")", c.f, marked, c.wantLeft)
	}
	img := cloneFrame(smoothRight)
	if err := e.MarkGrid(img, Payload(0xa110c), GridFine); err != nil {
		t.Fatal(err)
	}
	check("MarkGrid", smoothRight, img, false)
}

// TestAllocateSizes: every frame size Mark accepts, the smallest and the
// most elongated included, gets one finite, positive scale per block.
func TestAllocateSizes(t *testing.T) {
	for _, size := range [][2]int{{MinMarkWidth, MinMarkHeight}, {MinMarkWidth, 4 * MinMarkWidth}, {4096, 1024}, {1024, 4096}, {8192, 2048}, {641, 361}} {
		f := halfBusy(size[0], size[1], size[0]%2 == 0, 3)
		if err := f.validate(MinMarkWidth, MinMarkHeight); err != nil {
			t.Fatalf("%dx%d: %v", size[0], size[1], err)
		}
		amp := blockAmplitudes(f, GridFine)
		scale, _ := allocate(f, amp, nil, false)
		if len(scale) != len(amp) {
			t.Fatalf("%dx%d: %d scales for %d blocks", size[0], size[1], len(scale), len(amp))
		}
		for b, k := range scale {
			if !(k > 0 && k < 3) || amp[b] <= 0 {
				t.Fatalf("%dx%d: block %d scale %v, amplitude %d", size[0], size[1], b, k, amp[b])
			}
		}
	}
}

// TestAllocationLiftsCRF28: on Big Buck Bunny (1080p60, fast motion and
// fine texture, the hardest real clip), at the same mark energy, the
// allocation reads more evidence after a CRF 23 rendition and an x264
// CRF 28 re-encode than the mask alone: in each of two 32-frame windows,
// and 1.86 times in the weaker (0.51 -> 0.95 when written).
func TestAllocationLiftsCRF28(t *testing.T) {
	kr, e := videoTest(t)
	const p = Payload(0x0123456789abcdef)
	path := sharedClip(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	orig := decodeRaw(t, path, "", 64)
	coded := convEncode(infoWord(kr.Current.Secret, p))
	fr := strconv.FormatFloat(probeFPS(t, path), 'f', 3, 64)
	read := func(off bool) (snr []float64, psnr float64) {
		allocOff = off
		defer func() { allocOff = false }()
		c := orig.clone()
		markVideo(t, e, c, p, GridFine)
		rend := decodeRaw(t, encode(t, c, fr, x264Args("23")...), "", 0)
		att := decodeRaw(t, encode(t, rend, fr, x264Args("28")...), "", 0)
		for w := 0; w+32 <= len(att.frames); w += 32 {
			d := NewDetector(kr)
			for i := w; i < w+32; i++ {
				if err := d.Add(att.luma(i)); err != nil {
					t.Fatal(err)
				}
			}
			snr = append(snr, bitSNR(d.refine(0, d.search(uniform)[0][0]).soft, coded))
		}
		return snr, psnrY(orig, c)
	}
	before, pb := read(true)
	after, pa := read(false)
	t.Logf("bit SNR per window: mask alone %.2f (PSNR %.2f dB), allocated %.2f (PSNR %.2f dB)", before, pb, after, pa)
	if math.Abs(pa-pb) > 0.3 {
		t.Errorf("PSNR %.2f dB allocated, %.2f dB not: the allocation must keep the energy", pa, pb)
	}
	if len(after) != 2 || len(before) != 2 {
		t.Fatalf("%d and %d windows, want 2", len(before), len(after))
	}
	// The weaker window decides whether a clip decodes; the stronger one
	// must not lose.
	for w := range after {
		if after[w] <= before[w] {
			t.Errorf("window %d: bit SNR %.2f allocated, %.2f not", w, after[w], before[w])
		}
	}
	if lo, lb := min(after[0], after[1]), min(before[0], before[1]); lo < 1.4*lb {
		t.Errorf("weaker window: bit SNR %.2f allocated, %.2f not; want at least 1.4 times", lo, lb)
	}
}

// squaresFrame is w x h of 24-px squares of random levels (busy at the
// detector's grid), its right half moved shift px to the right.
func squaresFrame(w, h, shift int, seed uint64) Frame {
	r := rand.New(rand.NewPCG(seed, 3))
	f := Frame{Y: make([]byte, w*h), Width: w, Height: h, Stride: w}
	n := w/24 + 2
	levels := make([]byte, n*(h/24+1))
	for i := range levels {
		levels[i] = byte(60 + r.IntN(136))
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			sx := x
			if x >= w/2 {
				sx = x - shift + 24
			}
			f.Y[y*w+x] = levels[(y/24)*n+sx/24]
		}
	}
	return f
}

// TestAllocateMotion: where the picture moved since the previous block's
// first frame, a region gets less of the mark than where it stood still;
// the total stays, and no block loses its mark.
func TestAllocateMotion(t *testing.T) {
	for _, size := range [][2]int{{1920, 1080}, {768, 432}} {
		w, h := size[0], size[1]
		_, prev := allocate(squaresFrame(w, h, 0, 1), blockAmplitudes(squaresFrame(w, h, 0, 1), GridFine), nil, true)
		// leftOverRight is the mean scale on the left half over the right's,
		// away from the boundary.
		leftOverRight := func(f Frame, prev []float32) float64 {
			amp := blockAmplitudes(f, GridFine)
			before := append([]int32(nil), amp...)
			scale, _ := allocate(f, amp, prev, false)
			bw := (w + maskBlock - 1) / maskBlock
			var e0, e1, l, r, nl, nr float64
			for b := range amp {
				e0 += float64(before[b]) * float64(before[b])
				e1 += float64(amp[b]) * float64(amp[b])
				if amp[b] <= 0 {
					t.Fatalf("%dx%d: block %d lost its mark", w, h, b)
				}
				switch x := (b % bw) * maskBlock; {
				case x < w/2-100:
					l += float64(scale[b])
					nl++
				case x > w/2+100:
					r += float64(scale[b])
					nr++
				}
			}
			if q := e1 / e0; q < 0.98 || q > 1.02 {
				t.Errorf("%dx%d: the mask's energy changed %.3f times", w, h, q)
			}
			return (l / nl) / (r / nr)
		}
		moved := squaresFrame(w, h, 12, 1)
		still, moving := leftOverRight(moved, nil), leftOverRight(moved, prev)
		same := leftOverRight(squaresFrame(w, h, 0, 1), prev)
		t.Logf("%dx%d: left/right scale without a previous frame %.2f, right half moved %.2f, nothing moved %.2f", w, h, still, moving, same)
		if moving < 1.3*still {
			t.Errorf("%dx%d: left/right scale %.2f with the right half moved, %.2f without the previous frame; want the moving half to get less", w, h, moving, still)
		}
		if math.Abs(same/leftOverRight(squaresFrame(w, h, 0, 1), nil)-1) > 0.01 {
			t.Errorf("%dx%d: a previous frame equal to this one changes the allocation", w, h)
		}
	}
}

// TestVideoMarkerMotion: a video's block takes the motion since the
// previous block's first frame into its allocation, except at a restart
// (a segment of a resumable pass), which marks as the video's first block.
func TestVideoMarkerMotion(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	const w, h, p = 1280, 720, Payload(0x30710)
	first, moved := squaresFrame(w, h, 0, 1), squaresFrame(w, h, 12, 1)
	markAt := func(restart int, frames ...Frame) Frame {
		m := e.Video(p, GridFine, restart)
		var f Frame
		for i, src := range frames {
			f = cloneFrame(src)
			if err := m.Mark(context.Background(), f, i*cancelBlock); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	ratio := func(marked Frame) float64 {
		l, r := halvesEnergy(moved, marked)
		return l / r
	}
	alone, second := markAt(0, moved), markAt(0, first, moved)
	t.Logf("left/right mark energy: first block %.2f, second block after the right half moved %.2f", ratio(alone), ratio(second))
	if ratio(second) < 1.3*ratio(alone) {
		t.Errorf("left/right mark energy %.2f in the second block, %.2f in the first; want less on the half that moved", ratio(second), ratio(alone))
	}
	if restarted := markAt(cancelBlock, first, moved); !bytes.Equal(restarted.Y, alone.Y) {
		t.Error("a block at a restart is marked otherwise than a video's first block")
	}
}

// TestMotionTermSavesBits: on real moving video (Big Buck Bunny at 720p,
// 128 frames) the motion term lowers what the mark adds to the CRF 23
// rendition by at least 5% (about 13% measured), and that rendition still
// carries the mark.
func TestMotionTermSavesBits(t *testing.T) {
	kr, e := videoTest(t)
	const p = Payload(0x0123456789abcdef)
	path := sharedClip(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	fr := strconv.FormatFloat(probeFPS(t, path), 'f', 3, 64)
	orig := decodeRaw(t, path, "scale=1280:720", 128)
	unmarked := fileSizeOf(t, encode(t, orig, fr, x264Args("23")...))
	cost := func(motion float64) int64 {
		defer func(old float64) { allocMotion = old }(allocMotion)
		allocMotion = motion
		c := orig.clone()
		markVideo(t, e, c, p, GridFine)
		out := encode(t, c, fr, x264Args("23")...)
		if r := detectClip(t, kr, decodeRaw(t, out, "", 0), 0, 32); !r.Found || r.Payload != p {
			t.Errorf("motion term %g: the CRF 23 rendition gives %+v, want %v", motion, r, p)
		}
		return fileSizeOf(t, out) - unmarked
	}
	without, with := cost(0), cost(allocMotion)
	t.Logf("mark's cost at CRF 23: %d bytes without the motion term, %d with (%.3f; unmarked %d)", without, with, float64(with)/float64(without), unmarked)
	if float64(with) > 0.95*float64(without) {
		t.Errorf("the mark adds %d bytes with the motion term, %d without; want at least 5%% less", with, without)
	}
}
