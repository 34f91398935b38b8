package watermark

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/lessonflow/lessonflow/internal/testenv"
)

// Generated lesson-like clips: a white slide deck and a dark code editor,
// the flat content where weak watermarks fail.
const fontSans = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
const fontMono = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"

func slideClip(t testing.TB, w, h, secs int) string {
	text := "Lesson 4 - Fourier series\n\n* periodic signals\n* sines and cosines\n* orthogonality\n* convergence"
	vf := fmt.Sprintf("drawtext=fontfile=%s:text='%s':fontsize=%d:fontcolor=0x202020:x=%d:y=%d:line_spacing=%d,"+
		"drawtext=fontfile=%s:text='page %%{eif\\:floor(t/3)+1\\:d}':fontsize=%d:fontcolor=0x606060:x=w-tw-%d:y=h-th-%d",
		fontSans, text, h/18, w/12, h/8, h/40, fontSans, h/30, w/30, h/30)
	return testenv.Clip(t, fmt.Sprintf("wm-slide-%dx%d-%ds.mp4", w, h, secs),
		"-f", "lavfi", "-i", fmt.Sprintf("color=c=0xf4f4f4:s=%dx%d:r=25:d=%d", w, h, secs),
		"-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")
}

func darkClip(t testing.TB, w, h, secs int) string { return scrollingEditor(t, w, h, secs, 60) }

// scrollingEditor is the dark editor scrolling by h/perSec pixels a second
// (darkClip: h/60, a slow read; h/5 is a fast scroll through code).
func scrollingEditor(t testing.TB, w, h, secs, perSec int) string {
	code := "func main() {\n    for i = 0 to 10 {\n        total += weight(i) * x(i)\n    }\n    print(total)\n}\n\n// run with go run ."
	vf := fmt.Sprintf("drawtext=fontfile=%s:text='%s':fontsize=%d:fontcolor=0xc8c8c8:x=%d:y=%d-t*%d:line_spacing=%d,"+
		"drawbox=x=0:y=0:w=%d:h=ih:color=0x252526:t=fill",
		fontMono, code, h/30, w/6, h/6, h/perSec, h/60, w/8)
	name := fmt.Sprintf("wm-dark-%dx%d-%ds.mp4", w, h, secs)
	if perSec != 60 {
		name = fmt.Sprintf("wm-dark-%dx%d-%ds-scroll%d.mp4", w, h, secs, perSec)
	}
	return testenv.Clip(t, name,
		"-f", "lavfi", "-i", fmt.Sprintf("color=c=0x1e1e1e:s=%dx%d:r=25:d=%d", w, h, secs),
		"-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")
}

// psnrY is the luma PSNR between two clips of equal geometry.
func psnrY(a, b *rawClip) float64 {
	var se float64
	var n int
	for i := range a.frames {
		ya, yb := a.frames[i][:a.w*a.h], b.frames[i][:b.w*b.h]
		for k := range ya {
			d := float64(ya[k]) - float64(yb[k])
			se += d * d
		}
		n += len(ya)
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255*float64(n)/se)
}

// ssimY runs ffmpeg's ssim filter on two raw clips and returns the Y and All SSIM.
func ssimY(t testing.TB, a, b *rawClip) (y, all float64) {
	t.Helper()
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a.yuv"), filepath.Join(dir, "b.yuv")
	for _, x := range []struct {
		p string
		c *rawClip
	}{{pa, a}, {pb, b}} {
		if err := os.WriteFile(x.p, bytes.Join(x.c.frames, nil), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sz := fmt.Sprintf("%dx%d", a.w, a.h)
	out, err := exec.Command("ffmpeg", "-hide_banner", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", sz, "-i", pa,
		"-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", sz, "-i", pb, "-lavfi", "ssim", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ssim: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`SSIM Y:([0-9.]+).*All:([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("ssim output: %s", out)
	}
	y, _ = strconv.ParseFloat(string(m[1]), 64)
	all, _ = strconv.ParseFloat(string(m[2]), 64)
	return y, all
}

func (c *rawClip) clone() *rawClip {
	d := &rawClip{w: c.w, h: c.h}
	for _, f := range c.frames {
		d.frames = append(d.frames, append([]byte(nil), f...))
	}
	return d
}
