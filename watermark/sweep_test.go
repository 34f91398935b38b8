package watermark

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestSweep is the bitrate/robustness tradeoff experiment (WM_SWEEP=1;
// WM_CLIP a shared clip name or "slide"/"dark", WM_FRAMES, and the WM_FLAT /
// WM_MAX / WM_PERACT mask overrides of TestTune, WM_MOTION,
// WM_MARKED_ARGS: extra x264 arguments for the marked encode only,
// WM_PRESET: the rendition's x264 preset, and WM_RENDITION_ARGS: extra
// arguments, both encodes; WM_UNMARK_RECT and WM_GATE take the mark out of
// a rectangle or of moving squares, see unmarkRect and motionGate). It
// marks the clip, encodes the CRF 23 rendition (x264 veryfast) next to the
// unmarked frames for the size cost, then re-encodes the rendition with
// H.264 CRF 28 and 35 and H.265 CRF 28 and 35 and counts 32-frame windows with the
// exact payload, with each attack's median bit SNR (see TestMargin) and
// then every window's;
// WM_SWEEP_VF adds a filter attack after the CRF 28 re-encode; WM_LIST1=1
// also counts each window with one decoder path (listSize 1).
func TestSweep(t *testing.T) {
	x := startExperiment(t, "WM_SWEEP", "Sintel_1080_10s_2MB.mp4", 128)
	clip := x.clip
	orig, c := x.orig, x.c
	unmarkRect(t, orig, c)
	motionGate(t, orig, c)
	fps := probeFPS(t, x.path)
	sy, _ := ssimY(t, orig, c)
	fr := strconv.FormatFloat(fps, 'f', 3, 64)
	rendArgs := x264Args("23")
	rendArgs[3] = envOr("WM_PRESET", "veryfast") // after "-preset"
	rendArgs = append(rendArgs, strings.Fields(os.Getenv("WM_RENDITION_ARGS"))...)
	plain := encode(t, orig, fr, rendArgs...)
	marked := encode(t, c, fr, append(rendArgs, strings.Fields(os.Getenv("WM_MARKED_ARGS"))...)...)
	sp, sm := fileSizeOf(t, plain), fileSizeOf(t, marked)
	secs := float64(len(c.frames)) / fps
	kbps := func(b int64) float64 { return float64(b) * 8 / secs / 1000 }
	rend := decodeRaw(t, marked, "", 0)
	count := func(a *rawClip) string {
		*x.list1 = 0
		ok, tot, snrs := x.windows(t, a, 32, nil)
		if os.Getenv("WM_LIST1") != "" {
			return fmt.Sprintf("%d/%d [1 path: %d] (SNR %.2f)", ok, tot, *x.list1, snrs[len(snrs)/2])
		}
		return fmt.Sprintf("%d/%d (SNR %.2f %.2f)", ok, tot, snrs[len(snrs)/2], snrs)
	}
	res := []string{count(rend)}
	for _, args := range [][]string{x264Args("28"), x264Args("35"),
		{"-c:v", "libx265", "-preset", "ultrafast", "-crf", "28", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"},
		{"-c:v", "libx265", "-preset", "ultrafast", "-crf", "35", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"}} {
		res = append(res, count(decodeRaw(t, encode(t, rend, fr, args...), "", 0)))
	}
	// WM_SWEEP_VF: a filter attack (crop, scale...) on the x264 CRF 28 re-encode.
	if vf := os.Getenv("WM_SWEEP_VF"); vf != "" {
		t.Logf("SWEEP %s x264-28 + %s: %s", clip, vf, count(decodeRaw(t, encode(t, rend, fr, x264Args("28")...), vf, 0)))
	}
	t.Logf("SWEEP %s preset=%s %s grid=%s level=%d cells=%d interp=%s flat=%.2f max=%.2f | PSNR %.2f SSIM %.4f | size %+.1f%% (%.0f -> %.0f kbps, %+.0f kbps) | crf23 %s x264-28 %s x264-35 %s x265-28 %s x265-35 %s",
		clip, envOr("WM_PRESET", "veryfast"), os.Getenv("WM_RENDITION_ARGS"), x.grid, blockLevel, cellsFor(c.w), os.Getenv("WM_INTERP"), ampFlat, ampMax, psnrY(orig, c), sy,
		100*(float64(sm)/float64(sp)-1), kbps(sp), kbps(sm), kbps(sm)-kbps(sp), res[0], res[1], res[2], res[3], res[4])
}

func probeFPS(t testing.TB, path string) float64 {
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=avg_frame_rate",
		"-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(out))
	a, b, _ := strings.Cut(s, "/")
	num, _ := strconv.ParseFloat(a, 64)
	den, _ := strconv.ParseFloat(b, 64)
	if den == 0 {
		den = 1
	}
	return num / den
}

func fileSizeOf(t testing.TB, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func init() {
	switch os.Getenv("WM_INTERP") {
	case "cos": // raised cosine: no slope discontinuity at cell centres
		interpWeight = func(f float64) float64 { return (1 - math.Cos(math.Pi*f)) / 2 }
	}
}

// unmarkRect restores the unmarked pixels of the rectangle WM_UNMARK_RECT
// ("x0,y0,x1,y1") in every frame: where in the picture a mark's cost sits
// (README, "Twenty-third round").
func unmarkRect(t *testing.T, orig, c *rawClip) {
	v := os.Getenv("WM_UNMARK_RECT")
	if v == "" {
		return
	}
	var x0, y0, x1, y1 int
	if _, err := fmt.Sscanf(v, "%d,%d,%d,%d", &x0, &y0, &x1, &y1); err != nil || x0 < 0 || y0 < 0 || x1 > c.w || y1 > c.h || x0 >= x1 || y0 >= y1 {
		t.Fatalf("WM_UNMARK_RECT %q: want x0,y0,x1,y1 inside %dx%d", v, c.w, c.h)
	}
	for i := range c.frames {
		restoreRect(orig, c, i, x0, y0, x1, y1)
	}
}

// restoreRect copies frame i's unmarked luma in [x0,x1)×[y0,y1) back
// over the marked copy.
func restoreRect(orig, c *rawClip, i, x0, y0, x1, y1 int) {
	for y := y0; y < y1; y++ {
		copy(c.frames[i][y*c.w+x0:y*c.w+x1], orig.frames[i][y*c.w+x0:y*c.w+x1])
	}
}

// motionGate is the block grid's motion gate experiment, WM_GATE="T,D[,N[,CAP]]":
// in each 32-frame block, a 32 px square whose mean absolute change
// between consecutive frames (into the next block's first frame) exceeds
// T levels in at least N frame pairs (default 1) carries no mark, and so
// do its neighbours up to D squares away; with CAP, only the most-moving
// squares, about CAP% of the frame after the dilation. The gate changes
// only at block boundaries (README, "Twenty-third round").
func motionGate(t *testing.T, orig, c *rawClip) {
	v := os.Getenv("WM_GATE")
	if v == "" {
		return
	}
	var T float64
	var D, N int
	capPct := 100.0
	if n, _ := fmt.Sscanf(v, "%g,%d,%d,%g", &T, &D, &N, &capPct); n < 2 || D < 0 {
		t.Fatalf("WM_GATE %q: want T,D[,N[,CAP]]", v)
	}
	N = max(N, 1)
	const sq, blk = 32, 32
	nx, ny := (c.w+sq-1)/sq, (c.h+sq-1)/sq
	gated, total := 0, 0
	for b := 0; b*blk < len(c.frames); b++ {
		moves := make([]int, nx*ny)
		energy := make([]float64, nx*ny)
		last := min((b+1)*blk, len(c.frames)-1)
		for f := b * blk; f < last; f++ {
			a, n := orig.frames[f], orig.frames[f+1]
			for cy := 0; cy < ny; cy++ {
				for cx := 0; cx < nx; cx++ {
					var s, cnt float64
					for y := cy * sq; y < min((cy+1)*sq, c.h); y++ {
						for x := cx * sq; x < min((cx+1)*sq, c.w); x++ {
							d := float64(a[y*c.w+x]) - float64(n[y*c.w+x])
							s += math.Abs(d)
							cnt++
						}
					}
					if s/cnt > T {
						moves[cy*nx+cx]++
					}
					energy[cy*nx+cx] += s / cnt
				}
			}
		}
		// The cap keeps the most-moving squares; dilation multiplies them.
		order := make([]int, 0, nx*ny)
		for i := range moves {
			if moves[i] >= N {
				order = append(order, i)
			}
		}
		sort.Slice(order, func(a, b int) bool { return energy[order[a]] > energy[order[b]] })
		limit := int(capPct / 100 * float64(nx*ny) / float64((2*D+1)*(2*D+1)))
		if len(order) > limit {
			for _, i := range order[limit:] {
				moves[i] = 0
			}
		}
		gate := make([]bool, nx*ny)
		for cy := 0; cy < ny; cy++ {
			for cx := 0; cx < nx; cx++ {
				if moves[cy*nx+cx] < N {
					continue
				}
				for dy := -D; dy <= D; dy++ {
					for dx := -D; dx <= D; dx++ {
						if x, y := cx+dx, cy+dy; x >= 0 && y >= 0 && x < nx && y < ny {
							gate[y*nx+x] = true
						}
					}
				}
			}
		}
		for i, g := range gate {
			total++
			if !g {
				continue
			}
			gated++
			cx, cy := i%nx, i/nx
			for f := b * blk; f < min((b+1)*blk, len(c.frames)); f++ {
				restoreRect(orig, c, f, cx*sq, cy*sq, min((cx+1)*sq, c.w), min((cy+1)*sq, c.h))
			}
		}
	}
	t.Logf("GATE %s: %.1f%% of squares unmarked", v, 100*float64(gated)/float64(total))
}
