package watermark

import (
	"fmt"
	"math"
	"os"
	"os/exec"
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

// motionGate takes the mark out of the squares MotionGate gates, block by
// block (WM_GATE=S: the gate reads the frames downscaled S times, by box
// averages; the pass reads a half-size decode). The unmarked pixels are
// put back, which is what GatedOffsets' plane makes of them.
func motionGate(t *testing.T, orig, c *rawClip) {
	v := os.Getenv("WM_GATE")
	if v == "" {
		return
	}
	s, err := strconv.Atoi(v)
	if err != nil || s < 1 || s > 8 {
		t.Fatalf("WM_GATE %q: want a downscale factor, 1 to 8", v)
	}
	g, err := NewMotionGate(c.w, c.h)
	if err != nil {
		t.Fatal(err)
	}
	fw, fh := c.w/s, c.h/s
	small := make([]byte, fw*fh)
	var share float64
	blocks := 0
	for b := 0; b*GateFrames < len(c.frames); b++ {
		last := min((b+1)*GateFrames, len(c.frames))
		for f := b * GateFrames; f < last; f++ {
			for y := range fh {
				for x := range fw {
					sum := 0
					for dy := range s {
						for dx := range s {
							sum += int(orig.frames[f][(y*s+dy)*c.w+x*s+dx])
						}
					}
					small[y*fw+x] = uint8((sum + s*s/2) / (s * s))
				}
			}
			if err := g.Add(Frame{Y: small, Width: fw, Height: fh, Stride: fw}); err != nil {
				t.Fatal(err)
			}
		}
		gate := g.Done()
		share += gate.Share()
		blocks++
		for i, off := range gate.off {
			if !off {
				continue
			}
			cx, cy := i%gate.nx, i/gate.nx
			for f := b * GateFrames; f < last; f++ {
				restoreRect(orig, c, f, cx*gateSquare, cy*gateSquare, min((cx+1)*gateSquare, c.w), min((cy+1)*gateSquare, c.h))
			}
		}
	}
	t.Logf("GATE scale %d: %.1f%% of squares unmarked", s, 100*share/float64(blocks))
}
