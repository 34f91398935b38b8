package watermark

import (
	"os"
	"strconv"
	"testing"
)

// experiment is the marked clip shared by the opt-in experiments (TestTune,
// TestSweep): the original frames, the marked copy and the key to detect with.
type experiment struct {
	kr   Keyring
	path string
	orig *rawClip
	c    *rawClip
	p    Payload
}

// markExperiment applies the WM_FLAT / WM_MAX / WM_PERACT mask overrides,
// resolves clip (a shared clip name or "slide"/"dark"), decodes its first n
// frames and marks them with a fixed payload.
func markExperiment(t *testing.T, clip string, n int) experiment {
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
	return experiment{kr: kr, path: path, orig: orig, c: c, p: p}
}

// windows runs detection on each whole win-frame window of a and counts the
// windows that read back the exact payload; each (optional) sees every result.
func (x experiment) windows(t *testing.T, a *rawClip, win int, each func(start int, r Result)) (ok, tot int) {
	for s := 0; s+win <= len(a.frames); s += win {
		r := detectClip(t, x.kr, a, s, win)
		tot++
		if r.Found && r.Payload == x.p {
			ok++
		}
		if each != nil {
			each(s, r)
		}
	}
	return ok, tot
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
