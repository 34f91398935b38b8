package watermark

import (
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// experiment is the marked clip shared by the opt-in experiments (TestTune,
// TestSweep): the original frames, the marked copy and the key to detect with.
type experiment struct {
	clip string // as named by WM_CLIP or the default
	kr   Keyring
	path string
	orig *rawClip
	c    *rawClip
	p    Payload
	grid Grid
	// list1 counts, with WM_LIST1 set, the windows one decoder path reads
	// exactly (listSize 1), for comparison with the list decoder.
	list1 *int
}

// startExperiment skips t unless env is set, then marks the first
// WM_FRAMES frames (default frames) of WM_CLIP (default clip) with
// markExperiment.
func startExperiment(t *testing.T, env, clip string, frames int) experiment {
	t.Helper()
	if os.Getenv(env) == "" {
		t.Skip("experiment: set " + env + "=1")
	}
	if n, err := strconv.Atoi(os.Getenv("WM_FRAMES")); err == nil && n > 0 {
		frames = n
	}
	x := markExperiment(t, envOr("WM_CLIP", clip), frames)
	x.clip = envOr("WM_CLIP", clip)
	return x
}

// rendition encodes the marked frames as the CRF 23 rendition (x264
// veryfast) at the clip's rate, which it returns for the attacks.
func (x experiment) rendition(t *testing.T) (path, rate string) {
	t.Helper()
	rate = strconv.FormatFloat(probeFPS(t, x.path), 'f', 3, 64)
	return encode(t, x.c, rate, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"), rate
}

// markExperiment applies the WM_FLAT / WM_MAX / WM_PERACT mask overrides,
// the cancellation's WM_CANCEL_MAX / WM_CANCEL_MIN / WM_CANCEL_LAMBDA /
// WM_CANCEL_NORM=0 / WM_CANCEL_SYNC=0 / WM_CANCEL_KEEPSYNC=1
// (WM_BLOCK_LEVEL and WM_BLOCK_CELL, a cap on the cell, for GridBlock;
// WM_CELLS, cells across, and WM_CELL_PX for GridFine; WM_ZOOM_MIN, the
// detector's least zoom; WM_SCALE_TEXTURE=1, the small-cell scale on flat
// blocks only; WM_ALLOC_OFF=1, no energy allocation between regions, and
// WM_ALLOC_REGION / WM_ALLOC_MIN / WM_ALLOC_MAX, its region and clamp,
// WM_ALLOC_MOTION its motion term's level, 0 for none)
// (and WM_MOTION / WM_MOTION_MIN, the motion-adaptive variant), resolves clip (a shared clip name or "slide"/"dark",
// "@WxH" appended to scale it first), decodes its first n frames and marks
// them with a fixed payload.
func markExperiment(t *testing.T, clip string, n int) experiment {
	for _, v := range []struct {
		name string
		p    *float64
	}{{"WM_FLAT", &ampFlat}, {"WM_MAX", &ampMax}, {"WM_PERACT", &ampPerAct},
		{"WM_CANCEL_MAX", &cancelMax}, {"WM_CANCEL_MIN", &cancelMin}, {"WM_CANCEL_LAMBDA", &cancelLambda},
		{"WM_ALLOC_MIN", &allocMin}, {"WM_ALLOC_MAX", &allocMax}, {"WM_ALLOC_MOTION", &allocMotion}} {
		if f, err := strconv.ParseFloat(os.Getenv(v.name), 64); err == nil {
			*v.p = f
		}
	}
	cancelNorm = os.Getenv("WM_CANCEL_NORM") != "0"
	cancelSync = os.Getenv("WM_CANCEL_SYNC") != "0"
	cancelKeepSync = os.Getenv("WM_CANCEL_KEEPSYNC") != ""
	ampScaleTexture = os.Getenv("WM_SCALE_TEXTURE") != ""
	allocOff = os.Getenv("WM_ALLOC_OFF") != ""
	if l, err := strconv.Atoi(os.Getenv("WM_ALLOC_REGION")); err == nil && l > 0 {
		allocRegion = l
	}
	if l, err := strconv.Atoi(os.Getenv("WM_BLOCK_CELL")); err == nil {
		blockCellCap = l
	}
	if l, err := strconv.Atoi(os.Getenv("WM_CELLS")); err == nil {
		fixedCells = l
	}
	if l, err := strconv.Atoi(os.Getenv("WM_CELL_PX")); err == nil {
		cellPx = l
	}
	if z, err := strconv.ParseFloat(os.Getenv("WM_ZOOM_MIN"), 64); err == nil {
		zooms = zoomRange(z, zoomMax)
	}
	if l, err := strconv.Atoi(os.Getenv("WM_BLOCK_LEVEL")); err == nil {
		blockLevel = int32(l)
	}
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	var path string
	clip, size, _ := strings.Cut(clip, "@") // "name@1280x720": the clip scaled first
	vf := ""
	if size != "" {
		vf = "scale=" + strings.Replace(size, "x", ":", 1)
	}
	switch clip {
	case "slide":
		path = slideClip(t, 1920, 1080, 10)
	case "dark":
		path = darkClip(t, 1920, 1080, 10)
	case "scroll": // the dark editor scrolling fast (h/5 per second)
		path = scrollingEditor(t, 1920, 1080, 10, 5)
	case "slide720":
		path = slideClip(t, 1280, 720, 10)
	case "dark720":
		path = darkClip(t, 1280, 720, 10)
	case "slide432":
		path = slideClip(t, 768, 432, 10)
	case "dark432":
		path = darkClip(t, 768, 432, 10)
	default:
		path = sharedClip(t, clip)
	}
	c := decodeRaw(t, path, vf, n)
	orig := c.clone()
	p := Payload(0x0123456789abcdef)
	grid := GridFine
	if mt, err := strconv.ParseFloat(os.Getenv("WM_MOTION"), 64); err == nil {
		mmin, _ := strconv.ParseFloat(envOr("WM_MOTION_MIN", "0.4"), 64)
		for i := range c.frames {
			f := c.luma(i)
			amp := blockAmplitudes(f, GridFine)
			if i > 0 {
				motionScale(f, orig.luma(i-1), amp, mt, mmin)
			}
			e.addPattern(f, e.pattern(f.Width, f.Height, GridFine, p), amp)
		}
	} else {
		grid = markClip(t, e, c, p)
	}
	return experiment{kr: kr, path: path, orig: orig, c: c, p: p, grid: grid, list1: new(int)}
}

// windows runs detection on each whole win-frame window of a and counts the
// windows that read back the exact payload; each (optional) sees every
// result. snrs are the windows' bit SNRs (bitSNR at the best uniform sync
// candidate), sorted.
func (x experiment) windows(t *testing.T, a *rawClip, win int, each func(start int, r Result)) (ok, tot int, snrs []float64) {
	coded := convEncode(infoWord(x.kr.Current.Secret, x.p))
	for s := 0; s+win <= len(a.frames); s += win {
		d := NewDetector(x.kr)
		for i := s; i < s+win; i++ {
			if err := d.Add(a.luma(i)); err != nil {
				t.Fatal(err)
			}
		}
		r := d.Result()
		tot++
		if r.Found && r.Payload == x.p {
			ok++
		}
		if os.Getenv("WM_LIST1") != "" { // the same window, one decoder path
			saved := listSize
			listSize = 1
			if r1 := d.Result(); r1.Found && r1.Payload == x.p {
				*x.list1++
			}
			listSize = saved
		}
		if each != nil {
			each(s, r)
		}
		snrs = append(snrs, bitSNR(d.refine(0, d.search(uniform)[0][0]).soft, coded))
	}
	sort.Float64s(snrs)
	return ok, tot, snrs
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// motionScale lowers the amplitude of blocks whose content changed since
// the previous (unmarked) frame: there the encoder drags the fixed pattern
// along with the motion and pays for the difference.
func motionScale(f, prev Frame, amp []int32, thresh, minScale float64) {
	bw := (f.Width + maskBlock - 1) / maskBlock
	for b := range amp {
		by, bx := b/bw, b%bw
		var sad, n int
		for y := by * maskBlock; y < min((by+1)*maskBlock, f.Height); y += 2 {
			for x := bx * maskBlock; x < min((bx+1)*maskBlock, f.Width); x += 2 {
				d := int(f.Y[y*f.Stride+x]) - int(prev.Y[y*prev.Stride+x])
				if d < 0 {
					d = -d
				}
				sad += d
				n++
			}
		}
		m := float64(sad) / float64(max(n, 1))
		s := max(minScale, 1/(1+m/thresh))
		amp[b] = int32(float64(amp[b])*s + 0.5)
	}
}
