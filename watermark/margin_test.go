package watermark

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestMargin is the detector experiment (WM_MARGIN=1; WM_CLIP, WM_FRAMES,
// WM_ATTACKS a space-separated subset of the attacks below, WM_VARIANTS of
// the whitening variants below). It marks the clip, encodes the CRF 23
// rendition, applies each attack once with real ffmpeg, and then runs every
// detector variant on the same attacked frames, side by side: exact 32-frame
// windows, and the median per-window bit SNR (mean over standard deviation
// of the soft coded bits, signed by the true codeword, read at the best
// sync candidate: about 0 when the geometry is lost). A higher SNR at the
// same embedding is robustness gained for free.
func TestMargin(t *testing.T) {
	x := startExperiment(t, "WM_MARGIN", "Big_Buck_Bunny_1080_10s_2MB.mp4", 256)
	clip := x.clip
	rendPath, fr := x.rendition(t)
	type variant struct {
		name  string
		apply func()
	}
	base := func() { hpRadius, varRadius, varFloor, clipSigma, sdWeight = 2, 4, 0.25, 3, 1 }
	all := []variant{
		{"base", base},
		{"hp1", func() { base(); hpRadius = 1 }},
		{"hp3", func() { base(); hpRadius = 3 }},
		{"var2", func() { base(); varRadius = 2 }},
		{"var8", func() { base(); varRadius = 8 }},
		{"floor1", func() { base(); varFloor = 1 }},
		{"floor4", func() { base(); varFloor = 4 }},
		{"clip2", func() { base(); clipSigma = 2 }},
		{"noclip", func() { base(); clipSigma = 100 }},
		{"w0", func() { base(); sdWeight = 0 }},
		{"w2", func() { base(); sdWeight = 2 }},
	}
	want := strings.Fields(envOr("WM_VARIANTS", "base hp1 hp3 var2 var8 floor1 floor4 clip2 noclip w0 w2"))
	var vs []variant
	for _, w := range want {
		for _, v := range all {
			if v.name == w {
				vs = append(vs, v)
			}
		}
	}
	defer base()
	for _, an := range strings.Fields(envOr("WM_ATTACKS", "x264-28 x265-28 x264-35 combined")) {
		a := attacked(t, x, rendPath, fr, an)
		for _, v := range vs {
			v.apply()
			exact, tot, snrs := x.windows(t, a, 32, nil)
			t.Logf("MARGIN %s %s %-7s exact %d/%d  median SNR %.2f  min %.2f  %s", clip, an, v.name, exact, tot,
				snrs[len(snrs)/2], snrs[0], fmtFloats(snrs))
		}
	}
}

// attacked is the experiments' attack name on the CRF 23 rendition at
// rendPath of x: "raw" (the marked frames, no codec), "crf23" (the
// rendition), "x264-28", "x264-35", "x265-28", "x265-35" (re-encodes) or
// "combined" (combinedAttack).
func attacked(t *testing.T, x experiment, rendPath, fr, name string) *rawClip {
	t.Helper()
	reencode := func(args ...string) *rawClip {
		return decodeRaw(t, encode(t, decodeRaw(t, rendPath, "", 0), fr, append(args, "-pix_fmt", "yuv420p")...), "", 0)
	}
	x265 := func(crf string) *rawClip {
		return reencode("-c:v", "libx265", "-preset", "ultrafast", "-crf", crf, "-x265-params", "log-level=error")
	}
	switch name {
	case "raw":
		return x.c
	case "crf23":
		return decodeRaw(t, rendPath, "", 0)
	case "x264-28", "x264-35":
		return reencode("-c:v", "libx264", "-preset", "veryfast", "-crf", strings.TrimPrefix(name, "x264-"))
	case "x265-28", "x265-35":
		return x265(strings.TrimPrefix(name, "x265-"))
	case "combined":
		return combinedAttack(t, rendPath, fr)
	}
	t.Fatalf("unknown attack %q", name)
	return nil
}

// combinedAttack is the bench's combined attack on the rendition: crop to
// 90%, 640x360 and brightness +10%, encoded with x264 CRF 28.
func combinedAttack(t *testing.T, rendPath, fr string) *rawClip {
	r := decodeRaw(t, rendPath, "crop=trunc(iw*0.45)*2:trunc(ih*0.45)*2,scale=640:360,lutyuv=y=val*1.1", 0)
	enc := encode(t, r, fr, "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p")
	return decodeRaw(t, enc, "", 0)
}

func bitSNR(soft []float64, coded []uint8) float64 {
	var s, s2 float64
	for i, v := range soft {
		u := v * float64(2*int(coded[i])-1)
		s += u
		s2 += u * u
	}
	n := float64(len(soft))
	m := s / n
	sd := math.Sqrt(math.Max(s2/n-m*m, 1e-30))
	return m / sd
}

func fmtFloats(v []float64) string {
	var b strings.Builder
	for _, f := range v {
		fmt.Fprintf(&b, "%.3g ", f)
	}
	return b.String()
}
