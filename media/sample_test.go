package media

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/internal/testenv"
)

// collect runs a sampler and returns every frame it emitted.
func collect(t *testing.T, run func(emit func(Frame) error) error) []Frame {
	t.Helper()
	var frames []Frame
	if err := run(func(f Frame) error { frames = append(frames, f); return nil }); err != nil {
		t.Fatal(err)
	}
	return frames
}

func probe(t testing.TB, path string) Info {
	t.Helper()
	info, err := Probe(context.Background(), path, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// checkFrames asserts indexes, increasing timestamps and decodable JPEGs of
// the requested width and even height, whose size matches the Frame.
func checkFrames(t *testing.T, frames []Frame, width int) {
	t.Helper()
	if len(frames) == 0 {
		t.Fatal("no frames")
	}
	for i, f := range frames {
		if f.Index != i {
			t.Fatalf("frame %d has index %d", i, f.Index)
		}
		if i > 0 && f.PTSMS <= frames[i-1].PTSMS {
			t.Fatalf("frame %d at %d ms, previous at %d ms", i, f.PTSMS, frames[i-1].PTSMS)
		}
		img, err := jpeg.Decode(bytes.NewReader(f.JPEG))
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		b := img.Bounds()
		if b.Dx() != width || b.Dy()%2 != 0 || b.Dx() != f.Width || b.Dy() != f.Height {
			t.Fatalf("frame %d is %dx%d (Frame says %dx%d), want width %d and even height",
				i, b.Dx(), b.Dy(), f.Width, f.Height, width)
		}
	}
}

func TestSampleFramesSharedVideos(t *testing.T) {
	for _, name := range testenv.SharedVideos {
		t.Run(name, func(t *testing.T) {
			path := testenv.SharedVideo(t, name)
			info := probe(t, path)
			s := DefaultSampler
			frames := collect(t, func(emit func(Frame) error) error {
				return SampleFrames(t.Context(), path, info, s, emit)
			})
			checkFrames(t, frames, s.Width)
			if want := s.Width * info.Height / info.Width; abs(frames[0].Height-want) > 1 {
				t.Errorf("height %d, want about %d", frames[0].Height, want)
			}
			if frames[0].PTSMS > 50 {
				t.Errorf("first frame at %d ms", frames[0].PTSMS)
			}
			interval, _ := coarseSpacing(info.DurationMS, s)
			period := int64(math.Ceil(1000 / info.FPS))
			if decodeArgs(info) != nil {
				period *= maxNonRefRun // a pick waits for the next reference frame
			}
			end := frames[len(frames)-1].PTSMS
			for i := 1; i < len(frames); i++ {
				if gap := frames[i].PTSMS - frames[i-1].PTSMS; gap > interval+period {
					t.Errorf("gap of %d ms before frame %d, interval %d ms", gap, i, interval)
				}
			}
			if info.DurationMS-end > interval+period {
				t.Errorf("last frame at %d ms of %d", end, info.DurationMS)
			}
			t.Logf("%d frames, %d scene, interval %d ms", len(frames), countScene(frames), interval)
		})
	}
}

// TestSampleFramesResume: SampleFramesFrom after any frame of a run emits
// exactly the rest of that run (indexes, timestamps, scene flags and JPEG
// bytes), on real clips with B-frames (reference frames only), scene cuts,
// a stream that starts at 1.48 s, and loops whose frames sit off the
// millisecond grid (which failed both ways the resume once lost time: a
// seek added back a tick short, and the last pick's time taken from its
// rounded milliseconds). One-off runs agreed too: a 40-minute and a
// 5-minute clip (28 resume points), and the durability test's 20-minute
// looped clip (11 points, 4 of which the old resume got wrong).
func TestSampleFramesResume(t *testing.T) {
	clips := map[string]string{"scene cuts": sceneClip(t),
		"start offset": testenv.Clip(t, "luma-ramp-16-235-10s.ts", "-i", rampClip(t), "-c", "copy", "-f", "mpegts"),
		// Each loop starts where the longer audio ends, 15.5 ms after a
		// frame period, so the second loop's frames sit 0.547 ms past a
		// millisecond: a tick (0.078 ms) either way rounds them differently.
		"looped, stream-copied": testenv.Clip(t, "testsrc2-sine-5s-looped-4.mp4", "-stream_loop", "3", "-i", testenv.Clip(t, "testsrc2-sine-5s.mp4",
			"-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=5", "-f", "lavfi", "-i", "sine=frequency=330:duration=5",
			"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"), "-c", "copy")}
	for _, name := range []string{"Big_Buck_Bunny_1080_10s_2MB.mp4", "Sintel_1080_10s_2MB.mp4"} {
		clips[name] = testenv.SharedVideo(t, name)
	}
	for name, path := range clips {
		t.Run(name, func(t *testing.T) {
			info := probe(t, path)
			s := DefaultSampler
			full := collect(t, func(emit func(Frame) error) error { return SampleFrames(t.Context(), path, info, s, emit) })
			for k := 1; k <= len(full); k++ {
				rest := collect(t, func(emit func(Frame) error) error {
					return SampleFramesFrom(t.Context(), path, info, s, full[k-1].Resume, emit)
				})
				if len(rest) != len(full)-k {
					t.Fatalf("resumed after %d of %d frames: %d more, want %d", k, len(full), len(rest), len(full)-k)
				}
				for i, b := range rest {
					if a := full[k+i]; a.Index != b.Index || a.PTSMS != b.PTSMS || a.Scene != b.Scene || !bytes.Equal(a.JPEG, b.JPEG) {
						t.Fatalf("resumed after %d: frame %d is %d at %d ms (scene %v), want %d at %d ms (scene %v), same JPEG %v",
							k, k+i, b.Index, b.PTSMS, b.Scene, a.Index, a.PTSMS, a.Scene, bytes.Equal(a.JPEG, b.JPEG))
					}
				}
			}
			if r := full[len(full)-1].Resume; r.Next != len(full) || r.LastPTSMS != full[len(full)-1].PTSMS {
				t.Fatalf("last frame's resume %+v", r)
			}
		})
	}
}

func countScene(frames []Frame) int {
	n := 0
	for _, f := range frames {
		if f.Scene {
			n++
		}
	}
	return n
}

func abs(x int) int { return max(x, -x) }

// sceneClip is 3 s red, 3 s testsrc2, 3 s blue at 25 fps: cuts at 3 s and 6 s.
func sceneClip(t testing.TB) string {
	return testenv.Clip(t, "scene-red-testsrc2-blue.mp4", "-f", "lavfi", "-i",
		"color=c=red:s=320x240:r=25:d=3[a];testsrc2=s=320x240:r=25:d=3[b];color=c=blue:s=320x240:r=25:d=3[c];[a][b][c]concat=n=3:v=1:a=0[out0]",
		"-c:v", "libx264", "-pix_fmt", "yuv420p")
}

func TestSampleFramesSceneChanges(t *testing.T) {
	path := sceneClip(t)
	info := probe(t, path)
	s := SamplerSettings{Width: 160}
	frames := collect(t, func(emit func(Frame) error) error {
		return SampleFrames(t.Context(), path, info, s, emit)
	})
	checkFrames(t, frames, 160)
	for _, cut := range []int64{3000, 6000} {
		found := false
		for _, f := range frames {
			if f.PTSMS >= cut && f.PTSMS <= cut+40 { // within one frame of the cut
				found = true
				if !f.Scene {
					t.Errorf("frame at %d ms (cut at %d) not flagged Scene", f.PTSMS, cut)
				}
			}
		}
		if !found {
			t.Errorf("no frame picked at the cut at %d ms", cut)
		}
	}
	for _, f := range frames {
		if f.Scene && f.PTSMS != 3000 && f.PTSMS != 6000 {
			t.Errorf("frame at %d ms flagged Scene", f.PTSMS)
		}
		t.Logf("frame %d at %d ms scene=%v", f.Index, f.PTSMS, f.Scene)
	}
	// The colours prove frames and timestamps are paired correctly.
	for _, f := range frames {
		r, _, b := meanRGB(t, f.JPEG)
		switch {
		case f.PTSMS < 3000 && !(r > 200 && b < 60):
			t.Errorf("frame at %d ms is not red (r=%.0f b=%.0f)", f.PTSMS, r, b)
		case f.PTSMS >= 6000 && !(b > 200 && r < 60):
			t.Errorf("frame at %d ms is not blue (r=%.0f b=%.0f)", f.PTSMS, r, b)
		}
	}
}

func meanRGB(t *testing.T, jpg []byte) (r, g, b float64) {
	t.Helper()
	img, err := jpeg.Decode(bytes.NewReader(jpg))
	if err != nil {
		t.Fatal(err)
	}
	bounds := img.Bounds()
	n := 0.0
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			r, g, b = r+float64(c.R), g+float64(c.G), b+float64(c.B)
			n++
		}
	}
	return r / n, g / n, b / n
}

// rampClip's brightness encodes time: over 10 s luma ramps through the
// limited range 16..235, which the full-range JPEGs show as 0..255, so a frame
// shows when it was taken.
func rampClip(t testing.TB) string {
	return testenv.Clip(t, "luma-ramp-16-235-10s.mp4", "-f", "lavfi", "-i",
		"nullsrc=s=64x64:r=25:d=10,geq=lum='16+219*T/10':cb=128:cr=128", "-c:v", "libx264", "-pix_fmt", "yuv420p")
}

func meanLuma(t *testing.T, jpg []byte) float64 {
	t.Helper()
	img, err := jpeg.Decode(bytes.NewReader(jpg))
	if err != nil {
		t.Fatal(err)
	}
	yc, ok := img.(*image.YCbCr)
	if !ok {
		t.Fatalf("JPEG decodes to %T", img)
	}
	sum := 0.0
	for _, v := range yc.Y {
		sum += float64(v)
	}
	return sum / float64(len(yc.Y))
}

func checkRampTimestamps(t *testing.T, frames []Frame) {
	t.Helper()
	for _, f := range frames {
		want := 255 * float64(f.PTSMS) / 10000
		// 25.5 levels per second, 1 per frame: the picture is the one shown
		// at PTSMS, not a neighbour.
		if got := meanLuma(t, f.JPEG); math.Abs(got-want) > 1.5 {
			t.Errorf("frame at %d ms has luma %.1f, want %.1f", f.PTSMS, got, want)
		}
	}
}

func TestSampleFramesTimestampsMatchContent(t *testing.T) {
	path := rampClip(t)
	frames := collect(t, func(emit func(Frame) error) error {
		return SampleFrames(t.Context(), path, probe(t, path), SamplerSettings{MinIntervalMS: 800, Width: 64}, emit)
	})
	checkFrames(t, frames, 64)
	// 25 fps: a frame every 40 ms; a pick lands on the next reference frame.
	for i := 1; i < len(frames); i++ {
		if gap := frames[i].PTSMS - frames[i-1].PTSMS; gap < 800 || gap > 800+maxNonRefRun*40 {
			t.Errorf("frame %d is %d ms after the previous one, want 800-%d", i, gap, 800+maxNonRefRun*40)
		}
	}
	if len(frames) < 12 || len(frames) > 13 { // about 0, 0.8, ... 9.6 s
		t.Errorf("%d frames, want 12-13", len(frames))
	}
	checkRampTimestamps(t, frames)
}

func TestSampleFramesCap(t *testing.T) {
	path := testenv.SharedVideo(t, "one-by-one-person-detection.mp4") // 139.4 s
	info := probe(t, path)

	t.Run("stretched to cover the whole video", func(t *testing.T) {
		s := SamplerSettings{MaxFrames: 5, SceneThreshold: 0.01, Width: 96} // scene-happy
		frames := collect(t, func(emit func(Frame) error) error {
			return SampleFrames(t.Context(), path, info, s, emit)
		})
		checkFrames(t, frames, 96)
		interval, _ := coarseSpacing(info.DurationMS, s.WithDefaults())
		last := frames[len(frames)-1].PTSMS
		t.Logf("%d frames, last at %d ms, interval %d ms", len(frames), last, interval)
		if len(frames) > 5 {
			t.Errorf("%d frames, cap 5", len(frames))
		}
		if info.DurationMS-last > interval {
			t.Errorf("last frame at %d ms of %d: the end was not sampled", last, info.DurationMS)
		}
	})
	t.Run("hard stop when the duration is unknown", func(t *testing.T) {
		s := SamplerSettings{MaxFrames: 3, Width: 96}
		frames := collect(t, func(emit func(Frame) error) error {
			return SampleFrames(t.Context(), path, Info{}, s, emit)
		})
		if len(frames) != 3 {
			t.Errorf("%d frames, want exactly the cap of 3", len(frames))
		}
	})
}

// TestCoarseSpacingBound simulates the worst case (every frame a scene
// change) and checks the cap holds for any duration.
func TestCoarseSpacingBound(t *testing.T) {
	for _, durMS := range []int64{1, 40, 999, 10_000, 139_400, 3_600_000, 4 * 3_600_000} {
		for _, n := range []int{1, 2, 3, 7, 600} {
			s := SamplerSettings{MaxFrames: n}.WithDefaults()
			interval, gap := coarseSpacing(durMS, s)
			if interval < gap || gap < s.MinSceneGapMS || interval < s.MinIntervalMS {
				t.Fatalf("dur %d n %d: interval %d gap %d", durMS, n, interval, gap)
			}
			gapS := (float64(gap) - 0.1) / 1000
			count, prev := 0, math.NaN()
			// 60 fps, timestamps running 1% past the stated duration.
			for i := 0; float64(i)/60 <= float64(durMS)*1.01/1000; i++ {
				ts := float64(i) / 60
				if math.IsNaN(prev) || ts-prev >= gapS {
					count, prev = count+1, ts
				}
			}
			if count > n {
				t.Errorf("dur %d ms, cap %d: %d frames (gap %d ms)", durMS, n, count, gap)
			}
		}
	}
}

func TestSampleFramesEmitError(t *testing.T) {
	path := testenv.SharedVideo(t, "one-by-one-person-detection.mp4")
	info := probe(t, path)
	stop := errors.New("stop here")
	calls := 0
	start := time.Now()
	err := SampleFrames(t.Context(), path, info, SamplerSettings{MinIntervalMS: 500, Width: 96}, func(Frame) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the emit error", err)
	}
	if calls != 3 {
		t.Errorf("emit called %d times after failing at call 3", calls)
	}
	t.Logf("stopped after %v", time.Since(start))
}

func TestSampleFramesContextCancel(t *testing.T) {
	path := testenv.SharedVideo(t, "one-by-one-person-detection.mp4")
	info := probe(t, path)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	err := SampleFrames(ctx, path, info, SamplerSettings{MinIntervalMS: 500, Width: 96}, func(Frame) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if calls != 2 {
		t.Errorf("emit called %d times, cancelled at call 2", calls)
	}

	ctx, cancel2 := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel2()
	<-ctx.Done()
	if err := SampleFrames(ctx, path, info, DefaultSampler, func(Frame) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired ctx: err = %v", err)
	}
}

func TestSampleFramesCorruptStream(t *testing.T) {
	testenv.RequireFFmpeg(t)
	src, err := os.ReadFile(testenv.SharedVideo(t, "car-detection.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	// Keep the index (first 30 KB), replace the media data with noise: ffprobe
	// is happy, but almost no frame decodes.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 30_000; i < len(src); i++ {
		src[i] = byte(rng.Uint32())
	}
	path := filepath.Join(t.TempDir(), "corrupt.mp4")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := Probe(t.Context(), path, DefaultLimits)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	err = SampleFrames(t.Context(), path, info, DefaultSampler, func(Frame) error { return nil })
	if !IsInvalid(err) {
		t.Fatalf("err = %v, want InvalidError", err)
	}
	// The stderr tail explains what went wrong.
	if !strings.Contains(err.Error(), "ffmpeg:") || !strings.Contains(err.Error(), "decod") {
		t.Errorf("err = %v, want ffmpeg's stderr tail", err)
	}
	t.Log(err)
}

func TestSampleFramesNotAVideo(t *testing.T) {
	testenv.RequireFFmpeg(t)
	path := filepath.Join(t.TempDir(), "doc.mp4")
	if err := os.WriteFile(path, []byte("%PDF-1.4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := SampleFrames(t.Context(), path, Info{DurationMS: 1000}, DefaultSampler, func(Frame) error { return nil })
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
}

func TestSampleWindows(t *testing.T) {
	path := rampClip(t)
	windows := []Window{
		{StartMS: 6000, EndMS: 7000},
		{StartMS: 1000, EndMS: 2000},
		{StartMS: 1500, EndMS: 2500},   // overlaps the previous: merged
		{StartMS: 9500, EndMS: 12000},  // runs past the end
		{StartMS: 4000, EndMS: 3000},   // empty
		{StartMS: 20000, EndMS: 21000}, // past the end
	}
	s := SamplerSettings{DenseFPS: 4, Width: 64}
	frames := collect(t, func(emit func(Frame) error) error {
		return SampleWindows(t.Context(), path, Info{}, windows, s, emit)
	})
	checkFrames(t, frames, 64)
	var got []int64
	for _, f := range frames {
		got = append(got, f.PTSMS)
	}
	t.Logf("timestamps: %v", got)
	merged := []Window{{1000, 2500}, {6000, 7000}, {9500, 12000}}
	perWindow := make([][]int64, len(merged))
	for _, f := range frames {
		in := false
		for i, w := range merged {
			if f.PTSMS >= w.StartMS && f.PTSMS <= w.EndMS {
				in = true
				perWindow[i] = append(perWindow[i], f.PTSMS)
			}
		}
		if !in {
			t.Errorf("frame at %d ms is outside every window", f.PTSMS)
		}
	}
	// 4 fps: the first frame (25 fps: every 40 ms) of each 250 ms slot from
	// the window start, the clip ending at 9960 ms.
	for i, w := range merged {
		var want []int64
		for slot := w.StartMS; ; slot += 250 {
			first := (slot + 39) / 40 * 40
			if first > min(w.EndMS, 9960) {
				break
			}
			want = append(want, first)
		}
		if !slices.Equal(perWindow[i], want) {
			t.Errorf("window %v: frames at %v, want %v", w, perWindow[i], want)
		}
	}
	checkRampTimestamps(t, frames)

	if err := SampleWindows(t.Context(), path, Info{}, nil, s, func(Frame) error { t.Fatal("emitted"); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestSampleWindowsMaxDenseWindows(t *testing.T) {
	path := rampClip(t)
	windows := []Window{{8000, 8000}, {2000, 2000}, {5000, 5000}}
	frames := collect(t, func(emit func(Frame) error) error {
		return SampleWindows(t.Context(), path, Info{}, windows, SamplerSettings{MaxDenseWindows: 2, Width: 64}, emit)
	})
	if len(frames) != 2 || frames[0].PTSMS != 2000 || frames[1].PTSMS != 8000 {
		t.Fatalf("got %+v, want the first two windows in time order", frames)
	}
}

func TestWithDefaults(t *testing.T) {
	if got := (SamplerSettings{}).WithDefaults(); got != DefaultSampler {
		t.Errorf("zero settings: %+v", got)
	}
	s := SamplerSettings{MinIntervalMS: 1, SceneThreshold: math.NaN(), Width: 320, DenseFPS: math.Inf(1)}.WithDefaults()
	if s.MinIntervalMS != 1 || s.SceneThreshold != DefaultSampler.SceneThreshold || s.Width != 320 || s.DenseFPS != DefaultSampler.DenseFPS {
		t.Errorf("got %+v", s)
	}
}

func TestReadJPEG(t *testing.T) {
	img := image.NewYCbCr(image.Rect(0, 0, 16, 16), image.YCbCrSubsampleRatio420)
	var enc bytes.Buffer
	if err := jpeg.Encode(&enc, img, nil); err != nil {
		t.Fatal(err)
	}
	plain := enc.Bytes()
	// The same image with a comment segment holding FFD9 and fill bytes
	// before a marker: neither may end the frame.
	tricky := append([]byte{0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x06, 0xFF, 0xD9, 0xFF, 0xD9, 0xFF, 0xFF}, plain[3:]...)
	if _, err := jpeg.Decode(bytes.NewReader(tricky)); err != nil {
		t.Fatalf("test input is not a JPEG: %v", err)
	}
	stream := bytes.Join([][]byte{plain, tricky, plain}, nil)
	r := bufio.NewReaderSize(bytes.NewReader(stream), 16) // tiny buffer: ErrBufferFull paths
	for i, want := range [][]byte{plain, tricky, plain} {
		got, err := readJPEG(r)
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("image %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := readJPEG(r); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
	if _, err := readJPEG(bufio.NewReader(bytes.NewReader(plain[:len(plain)-5]))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := readJPEG(bufio.NewReader(strings.NewReader("GIF89a"))); err == nil {
		t.Fatal("not a JPEG: no error")
	}
}

func BenchmarkSampleFrames(b *testing.B) {
	path := testenv.SharedVideo(b, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	info := probe(b, path)
	for b.Loop() {
		n := 0
		err := SampleFrames(context.Background(), path, info, DefaultSampler, func(Frame) error { n++; return nil })
		if err != nil || n == 0 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkDecodeNull is the baseline for BenchmarkSampleFrames: a plain
// decode of the same clip.
func BenchmarkDecodeNull(b *testing.B) {
	path := testenv.SharedVideo(b, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	testenv.RequireFFmpeg(b)
	for b.Loop() {
		out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
		if err != nil {
			b.Fatal(err, string(out))
		}
	}
}

// MPEG-TS streams start at 1.4 s, not 0: timestamps still count from the
// start of the video, in both samplers, and agree with the content.
func TestSampleTimestampsWithStartOffset(t *testing.T) {
	path := testenv.Clip(t, "luma-ramp-16-235-10s.ts", "-i", rampClip(t), "-c", "copy", "-f", "mpegts")
	info := probe(t, path)
	frames := collect(t, func(emit func(Frame) error) error {
		return SampleFrames(t.Context(), path, info, SamplerSettings{Width: 64}, emit)
	})
	checkFrames(t, frames, 64)
	if frames[0].PTSMS != 0 {
		t.Errorf("first frame at %d ms", frames[0].PTSMS)
	}
	checkRampTimestamps(t, frames)
	dense := collect(t, func(emit func(Frame) error) error {
		return SampleWindows(t.Context(), path, Info{}, []Window{{StartMS: 3000, EndMS: 4000}}, SamplerSettings{Width: 64}, emit)
	})
	if len(dense) != 5 || dense[0].PTSMS != 3000 || dense[4].PTSMS != 4000 {
		t.Errorf("dense frames %+v", dense)
	}
	checkRampTimestamps(t, dense)
}

// maxNonRefRun bounds, in frame periods, how late a pick can land when only
// reference frames are decoded (x264's default B-pyramid leaves single
// unreferenced frames between references).
const maxNonRefRun = 4
