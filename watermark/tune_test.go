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
	if os.Getenv("WM_EXP") == "" {
		t.Skip("tuning experiment: set WM_EXP=1")
	}
	clip := os.Getenv("WM_CLIP")
	if clip == "" {
		clip = "Big_Buck_Bunny_1080_10s_2MB.mp4"
	}
	n, _ := strconv.Atoi(os.Getenv("WM_FRAMES"))
	if n == 0 {
		n = 64
	}
	for _, v := range []struct {
		name string
		p    *float64
	}{{"WM_FLAT", &ampFlat}, {"WM_MAX", &ampMax}, {"WM_PERACT", &ampPerAct}} {
		if f, err := strconv.ParseFloat(os.Getenv(v.name), 64); err == nil {
			*v.p = f
		}
	}
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	var path string
	switch clip {
	case "slide":
		path = slideClip(t, 1920, 1080, 10)
	case "dark":
		path = darkClip(t, 1920, 1080, 10)
	default:
		path = sharedClip(t, clip)
	}
	c := decodeRaw(t, path, "", n)
	orig := c.clone()
	p := Payload(0x0123456789abcdef)
	markClip(t, e, c, p)
	sy, sa := ssimY(t, orig, c)
	t.Logf("PSNR-Y %.2f SSIM Y %.4f All %.4f", psnrY(orig, c), sy, sa)
	win := 32
	if v, _ := strconv.Atoi(os.Getenv("WM_WIN")); v > 0 {
		win = v
	}
	report := func(name string, a *rawClip) {
		ok := 0
		tot := 0
		for s := 0; s+win <= len(a.frames); s += win {
			r := detectClip(t, kr, a, s, win)
			tot++
			if r.Found && r.Payload == p {
				ok++
			}
			t.Logf("%s win %d: %v conf %.2f sync %.1f %s", name, s, r.Found, r.Confidence, r.SyncScore, r.Transform)
		}
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

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
