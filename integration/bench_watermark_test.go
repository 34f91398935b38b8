package integration

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/leak"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

// TestWatermarkBench is `make bench-watermark`: one run over the shared real
// clips plus generated slide and dark-screen clips, printing embed/detect
// cost, PSNR/SSIM, bitrate cost, the exact-payload rate per 32-frame window
// under each attack, the combined attack's time to an exact payload, and the
// whole video pass against a plain x264 transcode. The anchor figures are
// quoted from issue 3 (invisible-watermark cannot be installed here). It
// asserts nothing about speed; it runs only with LESSONFLOW_BENCH_WATERMARK=1
// (=pass: only the whole-pass timing, a quick re-run on a noisy box).
// LESSONFLOW_BENCH_WATERMARK_PRESET sets the x264 preset of the marked
// rendition, of its unmarked twin and of the plain transcode the pass is
// timed against (default veryfast, what every round so far measured; the
// product serves LESSONFLOW_WATERMARK_PRESET, default medium). The attacks'
// re-encodes stay at veryfast/ultrafast, so their rows compare across runs.
// LESSONFLOW_BENCH_WATERMARK_GATE=off marks the block grid's moving squares
// too (LESSONFLOW_WATERMARK_MOTION_GATE=off; default on, as served).
func TestWatermarkBench(t *testing.T) {
	if os.Getenv("LESSONFLOW_BENCH_WATERMARK") == "" {
		t.Skip("a benchmark: run with LESSONFLOW_BENCH_WATERMARK=1 (make bench-watermark)")
	}
	testenv.RequireFFmpeg(t)
	enc := media.EncodeOptions{CRF: 23, Preset: cmp.Or(os.Getenv("LESSONFLOW_BENCH_WATERMARK_PRESET"), "veryfast")}
	if err := enc.Validate(); err != nil {
		t.Fatalf("LESSONFLOW_BENCH_WATERMARK_PRESET: %v", err)
	}
	gate := cmp.Or(os.Getenv("LESSONFLOW_BENCH_WATERMARK_GATE"), "on")
	if gate != "on" && gate != "off" {
		t.Fatalf("LESSONFLOW_BENCH_WATERMARK_GATE: want on or off, got %q", gate)
	}
	rendition := []string{"-c:v", "libx264", "-preset", enc.Preset, "-crf", "23", "-pix_fmt", "yuv420p"}
	kr, err := watermark.ParseKeyring("bench:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	if err != nil {
		t.Fatal(err)
	}
	emb, err := watermark.NewEmbedder(kr.Current)
	if err != nil {
		t.Fatal(err)
	}
	const payload = watermark.Payload(0x5eed0123456789ab)
	dir := t.TempDir()
	clips := []wmClip{
		{name: "BBB 1080p", path: testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4"), secs: 10},
		{name: "BBB 720p (scaled)", path: wmScaledClip(t, testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4"), "bbb", 1280, 720), secs: 10},
		{name: "Sintel 1080p", path: testenv.SharedVideo(t, "Sintel_1080_10s_2MB.mp4"), secs: 10},
		{name: "car 432p", path: testenv.SharedVideo(t, "car-detection.mp4"), secs: 30},
		{name: "person 432p", path: testenv.SharedVideo(t, "one-by-one-person-detection.mp4"), secs: 30},
		{name: "slide 1080p", path: wmSlideClip(t, 1920, 1080), secs: 10},
		{name: "dark 1080p", path: wmDarkClip(t, 1920, 1080), secs: 10},
		{name: "slide 720p", path: wmSlideClip(t, 1280, 720), secs: 10},
		{name: "dark 720p", path: wmDarkClip(t, 1280, 720), secs: 10},
	}
	attacks := []wmAttack{
		{name: "none (the CRF 23 rendition)"},
		{name: "H.264 CRF 23", enc: x264(23)},
		{name: "H.264 CRF 28", enc: x264(28)},
		{name: "H.264 CRF 35", enc: x264(35), tenSec: true},
		{name: "H.265 CRF 28", enc: x265(28)},
		{name: "H.265 CRF 35", enc: x265(35), tenSec: true},
		{name: "downscale 50%", vf: "scale=trunc(iw/4)*2:trunc(ih/4)*2"},
		{name: "640x360", vf: "scale=640:360"},
		{name: "crop 90% + resize back", vf: "crop=trunc(iw*0.45)*2:trunc(ih*0.45)*2,scale=%W:%H"},
		{name: "crop 80% + 640x360", vf: "crop=trunc(iw*0.4)*2:trunc(ih*0.4)*2,scale=640:360"},
		{name: "brightness +20%", vf: "lutyuv=y=val*1.2"},
		{name: "brightness -20%", vf: "lutyuv=y=val*0.8"},
		{name: "contrast +20%", vf: "eq=contrast=1.2"},
		{name: "contrast -20%", vf: "eq=contrast=0.8"},
		{name: "noise (ffmpeg noise c0s=12)", vf: "noise=c0s=12:c0f=t"},
		{name: "frame rate to 15 fps", vf: "fps=15"},
		{name: "horizontal flip", vf: "hflip"},
	}
	type clipStats struct {
		embedMS, detectMS, psnr, ssim, sizePct float64
		frames1080                             bool
		grid                                   watermark.Grid
		rates                                  []string
		combined                               string
		// traced: per re-encoding attack, then the combined one, what the
		// product's tracing path (package leak) answers on the whole copy.
		traced []string
	}
	var stats []clipStats
	var embed1080, detect1080 []float64
	passOnly := os.Getenv("LESSONFLOW_BENCH_WATERMARK") == "pass"
	for ci, c := range clips {
		if passOnly {
			break
		}
		c.probe(t)
		var cs clipStats
		vs, err := media.ProbeStream(context.Background(), c.path)
		if err != nil {
			t.Fatal(err)
		}
		// The grid the pipeline would choose (the whole file's keyframes, then
		// a trial encode at the rendition's settings).
		trial := activities.GridTrial{Embedder: emb, Payload: payload, Encode: enc, TempDir: dir}
		if cs.grid, err = activities.ChooseWatermarkGrid(context.Background(), c.path, vs, trial); err != nil {
			t.Fatal(err)
		}
		master := filepath.Join(dir, fmt.Sprintf("master-%d.mp4", ci))
		plain := filepath.Join(dir, fmt.Sprintf("plain-%d.mp4", ci))
		// The rendition: decode, mark (timed, one goroutine), encode at CRF 23;
		// the same frames unmarked go to a second encoder for the size cost.
		mk := wmStartEncoder(t, c, master, rendition)
		pl := wmStartEncoder(t, c, plain, rendition)
		var markTime time.Duration
		var q wmQuality
		marker, index := emb.Video(payload, cs.grid, 0), 0
		// The pass's marking, gate included; the embed time is Mark's.
		var popt media.TranscodeOptions
		passMark, passDone := activities.MarkPass(context.Background(), c.path, marker, vs, &popt, gate == "on")
		n := wmDecode(t, c.path, c.secs, "", func(f []byte, w, h int) {
			orig := append([]byte(nil), f...)
			if _, err := pl.Write(orig); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := marker.Mark(context.Background(), watermark.Frame{Y: f[:w*h], Width: w, Height: h, Stride: w}, index); err != nil {
				t.Fatal(err)
			}
			markTime += time.Since(start)
			if popt.OffsetBlocks != nil {
				copy(f[:w*h], orig[:w*h])
				if err := passMark(media.RawFrame{Y: f[:w*h], Width: w, Height: h, Index: index}); err != nil {
					t.Fatal(err)
				}
			}
			index++
			q.add(orig[:w*h], f[:w*h], w, h)
			if _, err := mk.Write(f); err != nil {
				t.Fatal(err)
			}
		})
		mk.close(t)
		pl.close(t)
		passDone()
		cs.embedMS = markTime.Seconds() * 1000 / float64(n)
		cs.psnr, cs.ssim = q.psnr(), q.ssim()
		cs.sizePct = 100 * (float64(fileSize(t, master))/float64(fileSize(t, plain)) - 1)
		cs.frames1080 = c.h == 1080
		for _, a := range attacks {
			src := master
			vf := strings.NewReplacer("%W", strconv.Itoa(c.w), "%H", strconv.Itoa(c.h)).Replace(a.vf)
			if a.enc != nil {
				src = filepath.Join(dir, "attacked.mp4")
				wmFFmpeg(t, append(append([]string{"-i", master}, a.enc...), src)...)
				cs.traced = append(cs.traced, wmTrace(t, kr, src, payload))
			}
			wins := []int{32}
			if a.tenSec {
				wins = []int{int(math.Round(10 * c.fps)), 32}
			}
			ok, total, dms := wmWindows(t, kr, src, vf, wins, payload)
			if a.name == attacks[0].name && c.h == 1080 {
				cs.detectMS = dms
			}
			cell := fmt.Sprintf("%d/%d", ok[0], total[0])
			if a.tenSec {
				cell = fmt.Sprintf("%d/%d (32f: %d/%d)", ok[0], total[0], ok[1], total[1])
			}
			cs.rates = append(cs.rates, cell)
		}
		// Combined: CRF 28 + crop to 90% + 640x360 + brightness +10%, exact
		// payload as frames accumulate from the start and from mid-clip.
		comb := filepath.Join(dir, "combined.mp4")
		wmFFmpeg(t, append(append([]string{"-i", master, "-vf", "crop=trunc(iw*0.45)*2:trunc(ih*0.45)*2,scale=640:360,lutyuv=y=val*1.1"}, x264(28)...), comb)...)
		cs.traced = append(cs.traced, wmTrace(t, kr, comb, payload))
		var worst float64
		for _, from := range []float64{0, float64(c.secs) / 2} {
			s := wmTimeToExact(t, kr, comb, from, c.fps, payload)
			worst = math.Max(worst, s)
		}
		if math.IsInf(worst, 1) {
			cs.combined = "not within clip"
		} else {
			cs.combined = fmt.Sprintf("%.2f s", worst)
		}
		if c.h == 1080 {
			embed1080 = append(embed1080, cs.embedMS)
			detect1080 = append(detect1080, cs.detectMS)
		}
		stats = append(stats, cs)
		t.Logf("%s done", c.name)
	}
	// The whole pass: media.Transcode marking every frame vs plain ffmpeg,
	// alternated so both see the same load; medians of 3. Two camera clips
	// (no grid trial) and two flat ones (whose grid choice runs the trial
	// encodes first). Two floors beside them: an ffmpeg decoder piping y4m
	// to an ffmpeg encoder, and the same with cat relaying the frames (what
	// any third process between them costs, before it does any work).
	passRows := []string{}
	for _, c := range clips {
		if !slices.Contains([]string{"BBB 1080p", "car 432p", "Sintel 1080p", "slide 1080p"}, c.name) {
			continue
		}
		out := filepath.Join(dir, "pass.mp4")
		var passes, plains, ratios, pipes, relays []float64
		for range 3 {
			start := time.Now()
			vs, err := media.ProbeStream(context.Background(), c.path)
			if err != nil {
				t.Fatal(err)
			}
			grid, err := activities.ChooseWatermarkGrid(context.Background(), c.path, vs, activities.GridTrial{Embedder: emb, Payload: payload, Encode: enc, TempDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			opt := media.TranscodeOptions{Encode: enc, Stream: &vs}
			mark, done := activities.MarkPass(context.Background(), c.path, emb.Video(payload, grid, 0), vs, &opt, gate == "on")
			if _, err := media.Transcode(context.Background(), c.path, out, opt, mark); err != nil {
				t.Fatalf("transcode %s: %v", c.name, err)
			}
			done()
			passes = append(passes, time.Since(start).Seconds())
			start = time.Now()
			wmFFmpeg(t, "-i", c.path, "-c:v", "libx264", "-crf", "23", "-preset", enc.Preset, "-c:a", "copy", filepath.Join(dir, "plainpass.mp4"))
			plains = append(plains, time.Since(start).Seconds())
			ratios = append(ratios, passes[len(passes)-1]/plains[len(plains)-1])
			for _, relay := range []bool{false, true} {
				start = time.Now()
				wmPipeline(t, c.path, filepath.Join(dir, "pipe.mp4"), enc.Preset, relay)
				if relay {
					relays = append(relays, time.Since(start).Seconds()/plains[len(plains)-1])
				} else {
					pipes = append(pipes, time.Since(start).Seconds()/plains[len(plains)-1])
				}
			}
		}
		pass, plainPass := median(passes), median(plains)
		passRows = append(passRows, fmt.Sprintf("| %s (whole file) | %.2f s | %.2f s | %.2fx | %.2fx | %.2fx | %.2fx |",
			c.name, pass, plainPass, pass/plainPass, median(ratios), median(pipes), median(relays)))
	}
	passHeader := "| whole video pass (decode + mark + encode, CRF 23 " + enc.Preset + ") | media.Transcode | plain ffmpeg | ratio of medians | per-pair median | floor: ffmpeg \\| ffmpeg, per-pair median | floor: ffmpeg \\| cat \\| ffmpeg, per-pair median |\n|---|---|---|---|---|---|---|\n"
	if passOnly {
		t.Logf("\n%s%s", passHeader, strings.Join(passRows, "\n"))
		return
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nWatermark bench (%d CPUs, GOMAXPROCS %d, marked rendition at CRF 23 x264 %s, attacks' x264/x265 preset veryfast/ultrafast)\n\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), enc.Preset)
	fmt.Fprintf(&b, "| 1080p frame, one core | ours | anchor dwtDct / dwtDctSvd (quoted from issue 3) |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| embed ms | %.1f | 204 / 584 |\n| detect ms (accumulate + 1/32 of a decode) | %.1f | 151 / 362 |\n\n", mean(embed1080), mean(detect1080))
	fmt.Fprintf(&b, "| clip | grid | PSNR-Y dB | SSIM-Y | size at CRF 23 | combined attack: exact after |\n|---|---|---|---|---|---|\n")
	for i, c := range clips {
		s := stats[i]
		fmt.Fprintf(&b, "| %s | %s | %.2f | %.4f | %+.1f%% | %s |\n", c.name, s.grid, s.psnr, s.ssim, s.sizePct, s.combined)
	}
	fmt.Fprintf(&b, "| anchor (quoted) | | 41.6-42.2 | | +21%% / +23%% | |\n\n")
	fmt.Fprintf(&b, "Exact payload per 32-frame window (CRF 35: per 10-second window, 32-frame in brackets)\n\n| attack |")
	for _, c := range clips {
		fmt.Fprintf(&b, " %s |", c.name)
	}
	fmt.Fprintf(&b, " anchor (quoted) |\n|---|")
	for range clips {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	anchor := map[string]string{
		"none (the CRF 23 rendition)": "50-75% / 100% of frames (no encode)",
		"H.264 CRF 28":                "32-frame vote 0.55 / 0.62-0.75 bit accuracy",
		"H.264 CRF 23":                "per-frame bits 0.53 / 0.65-0.76",
		"downscale 50%":               "bits 0.76 / 0.98",
		"crop 90% + resize back":      "bits 0.57 / 0.54 (chance)",
	}
	for ai, a := range attacks {
		fmt.Fprintf(&b, "| %s |", a.name)
		for i := range clips {
			fmt.Fprintf(&b, " %s |", stats[i].rates[ai])
		}
		fmt.Fprintf(&b, " %s |\n", anchor[a.name])
	}
	fmt.Fprintf(&b, "\nThe tracing path (package leak: `watermark detect` and the API; up to 30 s at 12 fps or less, one decision) on the whole re-encoded copy\n\n| attack |")
	for _, c := range clips {
		fmt.Fprintf(&b, " %s |", c.name)
	}
	b.WriteString("\n|---|")
	for range clips {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var traced []string
	for _, a := range attacks {
		if a.enc != nil {
			traced = append(traced, a.name)
		}
	}
	for ai, name := range append(traced, "combined") {
		fmt.Fprintf(&b, "| %s |", name)
		for i := range clips {
			fmt.Fprintf(&b, " %s |", stats[i].traced[ai])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n%s%s\n", passHeader, strings.Join(passRows, "\n"))
	fmt.Print(b.String())
	if out := os.Getenv("LESSONFLOW_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()), 0o644)
	}
}

// wmTrace runs the tracing path on the copy at path: "found" (the exact
// payload, with the frames it read), "not found", or the wrong id.
func wmTrace(t *testing.T, kr watermark.Keyring, path string, want watermark.Payload) string {
	t.Helper()
	rep, err := leak.Detect(context.Background(), kr, path, leak.Options{})
	switch {
	case err != nil:
		t.Fatalf("trace %s: %v", path, err)
	case !rep.Found:
		return fmt.Sprintf("not found (%d frames)", rep.Frames)
	case rep.Payload != want.String():
		return "wrong id " + rep.Payload
	}
	return fmt.Sprintf("found (%d frames)", rep.Frames)
}

type wmClip struct {
	name      string
	path      string
	secs      int
	w, h      int
	fps       float64
	frameSize int
}

func (c *wmClip) probe(t *testing.T) {
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
		"stream=width,height,r_frame_rate", "-of", "csv=p=0", c.path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", c.path, err)
	}
	parts := strings.Split(strings.TrimSpace(string(out)), ",")
	if len(parts) < 3 {
		t.Fatalf("ffprobe %s: %q", c.path, out)
	}
	c.w, _ = strconv.Atoi(parts[0])
	c.h, _ = strconv.Atoi(parts[1])
	num, den, _ := strings.Cut(parts[2], "/")
	n, _ := strconv.ParseFloat(num, 64)
	d, _ := strconv.ParseFloat(den, 64)
	c.fps = n / d
	c.frameSize = c.w*c.h + 2*((c.w+1)/2)*((c.h+1)/2)
}

type wmAttack struct {
	name   string
	vf     string
	enc    []string
	tenSec bool
}

func x264(crf int) []string {
	return []string{"-c:v", "libx264", "-preset", "veryfast", "-crf", strconv.Itoa(crf), "-pix_fmt", "yuv420p"}
}

func x265(crf int) []string {
	return []string{"-c:v", "libx265", "-preset", "ultrafast", "-crf", strconv.Itoa(crf), "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"}
}

func wmFFmpeg(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
}

// wmPipeline transcodes src to out as the watermark pass does, with no
// marking and no Go: an ffmpeg decoder writes y4m to a pipe, an ffmpeg
// encoder reads it (audio copied from src) at preset, with cat between them
// when relay is set.
func wmPipeline(t *testing.T, src, out, preset string, relay bool) {
	t.Helper()
	cmds := []*exec.Cmd{exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-i", src, "-map", "0:V:0", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "pipe:1")}
	if relay {
		cmds = append(cmds, exec.Command("cat"))
	}
	cmds = append(cmds, exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "yuv4mpegpipe", "-i", "pipe:0", "-i", src,
		"-map", "0:v", "-map", "1:a?", "-c:v", "libx264", "-crf", "23", "-preset", preset, "-c:a", "copy", out))
	var ends []*os.File // ours to close once the children hold them, so a dying reader stops its writer
	for i := 1; i < len(cmds); i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmds[i-1].Stdout, cmds[i].Stdin = w, r
		ends = append(ends, r, w)
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range ends {
		f.Close()
	}
	for i := len(cmds) - 1; i >= 0; i-- {
		if err := cmds[i].Wait(); err != nil {
			t.Fatalf("%s: %v", cmds[i].Path, err)
		}
	}
}

// wmDecode streams the first secs seconds of path through vf as yuv420p
// frames to fn and returns the frame count.
func wmDecode(t *testing.T, path string, secs int, vf string, fn func(frame []byte, w, h int)) int {
	t.Helper()
	args := []string{"-i", path}
	if secs > 0 {
		args = append(args, "-t", strconv.Itoa(secs))
	}
	if vf != "" {
		args = append(args, "-vf", vf)
	}
	return testenv.RawFrames(t, args, fn)
}

type wmEncoder struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr bytes.Buffer
}

func wmStartEncoder(t *testing.T, c wmClip, out string, codec []string) *wmEncoder {
	e := &wmEncoder{}
	args := append([]string{"-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
		"-s", fmt.Sprintf("%dx%d", c.w, c.h), "-r", strconv.FormatFloat(c.fps, 'f', -1, 64), "-i", "-"}, codec...)
	e.cmd = exec.Command("ffmpeg", append(args, out)...)
	e.cmd.Stderr = &e.stderr
	var err error
	if e.in, err = e.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *wmEncoder) Write(p []byte) (int, error) { return e.in.Write(p) }

func (e *wmEncoder) close(t *testing.T) {
	e.in.Close()
	if err := e.cmd.Wait(); err != nil {
		t.Fatalf("encode: %v\n%s", err, e.stderr.String())
	}
}

// wmWindows detects in consecutive windows of each size in wins (one
// decode of the video) and returns per size the windows with the exact
// payload and the window count, plus the detect cost in ms per frame of the
// first size (accumulation plus the window's decode, spread over it).
func wmWindows(t *testing.T, kr watermark.Keyring, path, vf string, wins []int, p watermark.Payload) (ok, total []int, msPerFrame float64) {
	ds := make([]*watermark.Detector, len(wins))
	for i := range ds {
		ds[i] = watermark.NewDetector(kr)
	}
	ok, total = make([]int, len(wins)), make([]int, len(wins))
	var spent time.Duration
	frames := 0
	wmDecode(t, path, 0, vf, func(f []byte, w, h int) {
		frames++
		for i, d := range ds {
			start := time.Now()
			if err := d.Add(watermark.Frame{Y: f[:w*h], Width: w, Height: h, Stride: w}); err != nil {
				t.Fatal(err)
			}
			if frames%wins[i] == 0 {
				r := d.Result()
				total[i]++
				if r.Found && r.Payload == p {
					ok[i]++
				}
				d.Reset()
			}
			if i == 0 {
				spent += time.Since(start)
			}
		}
	})
	return ok, total, spent.Seconds() * 1000 / float64(max(frames, 1))
}

// wmTimeToExact feeds frames from second `from` on and returns the seconds
// of video after which the decode first gives the exact payload (+Inf if
// never). It decodes after every 5 frames.
func wmTimeToExact(t *testing.T, kr watermark.Keyring, path string, from, fps float64, p watermark.Payload) float64 {
	d := watermark.NewDetector(kr)
	n := 0
	found := math.Inf(1)
	wmDecode(t, path, 0, fmt.Sprintf("trim=start=%g,setpts=PTS-STARTPTS", from), func(f []byte, w, h int) {
		if !math.IsInf(found, 1) {
			return
		}
		d.Add(watermark.Frame{Y: f[:w*h], Width: w, Height: h, Stride: w})
		n++
		if n%5 == 0 {
			if r := d.Result(); r.Found && r.Payload == p {
				found = float64(n) / fps
			}
		}
	})
	return found
}

// wmQuality accumulates luma PSNR and SSIM. SSIM is computed as ffmpeg's
// ssim filter (and x264) do: 8x8 windows on a 4-pixel grid.
type wmQuality struct {
	se       float64
	n        float64
	ssimSum  float64
	ssimWins float64
}

func (q *wmQuality) add(a, b []byte, w, h int) {
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		q.se += d * d
	}
	q.n += float64(len(a))
	const c1 = .01 * .01 * 255 * 255 * 64
	const c2 = .03 * .03 * 255 * 255 * 64 * 63
	bw, bh := w/4, h/4
	type sums struct{ s1, s2, ss, s12 float64 }
	blk := make([]sums, bw*bh)
	for by := 0; by < bh; by++ {
		for bx := 0; bx < bw; bx++ {
			var s sums
			for y := by * 4; y < by*4+4; y++ {
				for x := bx * 4; x < bx*4+4; x++ {
					p, r := float64(a[y*w+x]), float64(b[y*w+x])
					s.s1 += p
					s.s2 += r
					s.ss += p*p + r*r
					s.s12 += p * r
				}
			}
			blk[by*bw+bx] = s
		}
	}
	for by := 0; by+1 < bh; by++ {
		for bx := 0; bx+1 < bw; bx++ {
			var s sums
			for _, k := range []int{by*bw + bx, by*bw + bx + 1, (by+1)*bw + bx, (by+1)*bw + bx + 1} {
				s.s1 += blk[k].s1
				s.s2 += blk[k].s2
				s.ss += blk[k].ss
				s.s12 += blk[k].s12
			}
			vars := s.ss*64 - s.s1*s.s1 - s.s2*s.s2
			covar := s.s12*64 - s.s1*s.s2
			q.ssimSum += (2*s.s1*s.s2 + c1) * (2*covar + c2) / ((s.s1*s.s1 + s.s2*s.s2 + c1) * (vars + c2))
			q.ssimWins++
		}
	}
}

func (q *wmQuality) psnr() float64 {
	if q.se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255*q.n/q.se)
}

func (q *wmQuality) ssim() float64 { return q.ssimSum / q.ssimWins }

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(max(len(v), 1))
}

// wmSlideClip is a generated lesson-like clip, as in the watermark package's
// tests: a 10 s white slide deck of w x h (text sized for 1080p, scaled).
func wmSlideClip(t *testing.T, w, h int) string {
	text := "Lesson 4 - Fourier series\n\n* periodic signals\n* sines and cosines\n* orthogonality\n* convergence"
	px := func(v int) string { return wmScaled(v, h) }
	vf := "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:text='" + text + "':fontsize=" + px(60) + ":fontcolor=0x202020:x=" + px(160) + ":y=" + px(135) + ":line_spacing=" + px(27) + "," +
		"drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:text='page %{eif\\:floor(t/3)+1\\:d}':fontsize=" + px(36) + ":fontcolor=0x606060:x=w-tw-" + px(64) + ":y=h-th-" + px(36)
	return testenv.Clip(t, fmt.Sprintf("wmbench-slide-%dp-10s.mp4", h), "-f", "lavfi", "-i", fmt.Sprintf("color=c=0xf4f4f4:s=%dx%d:r=25:d=10", w, h),
		"-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")
}

// wmScaledClip is src scaled to w x h and re-encoded near losslessly: camera
// content at a lesson's common upload sizes.
func wmScaledClip(t *testing.T, src, name string, w, h int) string {
	return testenv.Clip(t, fmt.Sprintf("wmbench-%s-%dp.mp4", name, h), "-i", src, "-an", "-vf", fmt.Sprintf("scale=%d:%d", w, h),
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")
}

// wmScaled is v, a size in pixels at 1080p, at frame height h.
func wmScaled(v, h int) string { return strconv.Itoa(v * h / 1080) }

// wmDarkClip is a 10 s dark code editor of w x h, scrolling slowly (text
// sized for 1080p, scaled).
func wmDarkClip(t *testing.T, w, h int) string {
	code := "func main() {\n    for i = 0 to 10 {\n        total += weight(i) * x(i)\n    }\n    print(total)\n}\n\n// run with go run ."
	px := func(v int) string { return wmScaled(v, h) }
	vf := "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:text='" + code + "':fontsize=" + px(36) + ":fontcolor=0xc8c8c8:x=" + px(320) + ":y=" + px(180) + "-t*" + px(18) + ":line_spacing=" + px(18) + "," +
		"drawbox=x=0:y=0:w=" + px(240) + ":h=ih:color=0x252526:t=fill"
	return testenv.Clip(t, fmt.Sprintf("wmbench-dark-%dp-10s.mp4", h), "-f", "lavfi", "-i", fmt.Sprintf("color=c=0x1e1e1e:s=%dx%d:r=25:d=10", w, h),
		"-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")
}
