package watermark

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestTune is the tuning experiment behind the masking constants (WM_EXP=1;
// WM_CLIP a shared clip name or "slide"/"dark", WM_FRAMES, WM_WIN, WM_CRFS,
// WM_FLAT/WM_MAX/WM_PERACT to vary the mask, WM_QONLY=1 for quality only).
func TestTune(t *testing.T) {
	x := startExperiment(t, "WM_EXP", "Big_Buck_Bunny_1080_10s_2MB.mp4", 64)
	orig, c := x.orig, x.c
	sy, sa := ssimY(t, orig, c)
	t.Logf("PSNR-Y %.2f SSIM Y %.4f All %.4f", psnrY(orig, c), sy, sa)
	win := 32
	if v, _ := strconv.Atoi(os.Getenv("WM_WIN")); v > 0 {
		win = v
	}
	report := func(name string, a *rawClip) {
		ok, tot, _ := x.windows(t, a, win, func(s int, r Result) {
			t.Logf("%s win %d: %v conf %.2f sync %.1f %s", name, s, r.Found, r.Confidence, r.SyncScore, r.Transform)
		})
		t.Logf("%s: %d/%d", name, ok, tot)
	}
	if os.Getenv("WM_QONLY") != "" {
		return
	}
	report("raw", c)
	for _, crf := range strings.Fields(envOr("WM_CRFS", "23 28 35")) {
		f := encode(t, c, "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", crf)
		report("crf"+crf, decodeRaw(t, f, "", 0))
		if crf == "28" {
			report("crf28+360p", decodeRaw(t, f, "scale=640:360", 0))
			report("crf28+crop90", decodeRaw(t, f, "crop=iw*0.9:ih*0.9,scale=1920:1080", 0))
			report("crf28+flip", decodeRaw(t, f, "hflip", 0))
		}
	}
}
