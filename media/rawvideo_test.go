package media

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/watermark"
)

// stampBits is how many bits of the frame index stampIndex draws.
const stampBits = 10

// stampIndex draws i as a row of black/white 32x32 blocks into the luma
// plane: it survives H.264, so the order of encoded frames can be read back.
func stampIndex(f RawFrame, i int) {
	for b := range stampBits {
		v := byte(16)
		if i>>b&1 == 1 {
			v = 235
		}
		for y := range 32 {
			row := f.Y[y*f.Width+b*32:]
			for x := range 32 {
				row[x] = v
			}
		}
	}
}

func readIndex(f RawFrame) int {
	i := 0
	for b := range stampBits {
		sum := 0
		for y := 8; y < 24; y++ {
			for x := 8; x < 24; x++ {
				sum += int(f.Y[y*f.Width+b*32+x])
			}
		}
		if sum/256 > 128 {
			i |= 1 << b
		}
	}
	return i
}

// stamping is a transform that stamps each frame's index, finishing frames
// out of order on purpose (random short sleeps).
func stamping(f RawFrame) error {
	time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	stampIndex(f, f.Index)
	return nil
}

// checkOrder decodes path and checks it holds frames stamped 0..want-1 in order.
func checkOrder(t *testing.T, path string, want int) {
	t.Helper()
	n := 0
	_, err := Decode(context.Background(), path, DecodeOptions{}, func(f RawFrame) error {
		if got := readIndex(f); got != n%(1<<stampBits) {
			return fmt.Errorf("frame %d carries index %d", n, got)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("%s: %d frames, want %d", path, n, want)
	}
}

func runCmd(name string, args ...string) (string, error) {
	b, err := exec.Command(name, args...).CombinedOutput()
	return string(b), err
}

// lavfiClip: 4 s of testsrc2 at 25 fps with a sine tone: 100 frames.
func lavfiClip(t *testing.T) string {
	return testenv.Clip(t, "raw-testsrc2-320x240-25-4s-audio.mp4",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
		"-f", "lavfi", "-i", "sine=frequency=440:duration=4",
		"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest")
}

func TestTranscodeKeepsFramesOrderAndAudio(t *testing.T) {
	src := lavfiClip(t)
	dst := filepath.Join(t.TempDir(), "out.mp4")
	var progress atomic.Int64
	var segs []Segment
	res, err := Transcode(context.Background(), src, dst, TranscodeOptions{
		Encode: EncodeOptions{CRF: 18, Preset: "ultrafast"}, SegmentSeconds: 1, Workers: 4,
		OnSegment: func(s Segment) error { segs = append(segs, s); return nil },
		Progress:  func(n int) { progress.Store(int64(n)) },
	}, stamping)
	if err != nil {
		t.Fatal(err)
	}
	if res.Frames != 100 || progress.Load() != 100 || res.SegmentFrames != 25 {
		t.Fatalf("frames %d, progress %d, segment frames %d; want 100, 100, 25", res.Frames, progress.Load(), res.SegmentFrames)
	}
	if len(segs) != 4 {
		t.Fatalf("%d segments reported, want 4: %+v", len(segs), segs)
	}
	for i, s := range segs {
		if s.Index != i || s.FirstFrame != 25*i || s.Frames != 25 {
			t.Errorf("segment %d: %+v", i, s)
		}
	}
	v, a := testenv.CountPackets(t, dst)
	if v != 100 || a == 0 {
		t.Fatalf("output has %d video frames and %d audio packets, want 100 and some", v, a)
	}
	checkOrder(t, dst, 100)
	vs, err := ProbeStream(context.Background(), dst)
	if err != nil {
		t.Fatal(err)
	}
	if !vs.HasAudio || vs.AudioCodec != "aac" || vs.Rate != "25/1" || vs.Width != 320 || vs.Height != 240 {
		t.Fatalf("output stream %+v", vs)
	}
	if d := vs.DurationSec; d < 3.95 || d > 4.1 {
		t.Fatalf("output lasts %.3f s, want 4", d)
	}
	out, err := runCmd("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,profile", "-of", "csv=p=0", dst)
	if err != nil || !strings.HasPrefix(out, "h264") {
		t.Fatalf("video codec %q %v", out, err)
	}
}

func TestTranscodeRealClip(t *testing.T) {
	src := testenv.SharedVideo(t, "car-detection.mp4")
	dst := filepath.Join(t.TempDir(), "out.mp4")
	res, err := Transcode(context.Background(), src, dst, TranscodeOptions{
		Encode: EncodeOptions{CRF: 23, Preset: "ultrafast"}, SegmentSeconds: 10,
	}, func(f RawFrame) error {
		for i := range f.Y { // a visible change, so the encode is not a copy
			f.Y[i] ^= 1
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// ffprobe counts 377 frames at 12.5 fps in the source.
	sv, sa := testenv.CountPackets(t, src)
	v, a := testenv.CountPackets(t, dst)
	if res.Frames != sv || v != sv {
		t.Fatalf("frames: pass %d, output %d, source %d", res.Frames, v, sv)
	}
	if a < sa-2 || a > sa {
		t.Fatalf("audio packets: output %d, source %d", a, sa)
	}
	if len(res.Segments) != 4 || res.SegmentFrames != 125 {
		t.Fatalf("segments %d of %d frames, want 4 of 125", len(res.Segments), res.SegmentFrames)
	}
}

// A video that fits one segment is encoded straight into the rendition:
// one encoder run with the audio muxed in and the index up front.
func TestTranscodeWholeInOneRun(t *testing.T) {
	for _, c := range []struct {
		name, src string
		crf       int
	}{{"lavfi aac", lavfiClip(t), 18}, {"car", testenv.SharedVideo(t, "car-detection.mp4"), 23}} {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "out.mp4")
			var segs []Segment
			res, err := Transcode(context.Background(), c.src, dst, TranscodeOptions{
				Encode:    EncodeOptions{CRF: c.crf, Preset: "ultrafast"},
				OnSegment: func(s Segment) error { segs = append(segs, s); return nil },
			}, stamping)
			if err != nil {
				t.Fatal(err)
			}
			if !FitsOneSegment(res.Stream, res.SegmentFrames) || len(segs) != 1 || segs[0].Frames != res.Frames {
				t.Fatalf("segments %+v of %d frames for %d frames, want one whole", segs, res.SegmentFrames, res.Frames)
			}
			sv, sa := testenv.CountPackets(t, c.src)
			v, a := testenv.CountPackets(t, dst)
			if v != sv || res.Frames != sv || a < sa-2 || a > sa {
				t.Fatalf("output %d video / %d audio packets, pass %d frames; source %d / %d", v, a, res.Frames, sv, sa)
			}
			checkOrder(t, dst, sv)
			data := testenv.ReadFile(t, dst)
			if moov, mdat := bytes.Index(data, []byte("moov")), bytes.Index(data, []byte("mdat")); moov < 0 || moov > mdat {
				t.Fatalf("moov at %d, mdat at %d: want the index first (+faststart)", moov, mdat)
			}
			if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 1 {
				t.Fatalf("left behind in the output directory: %v", entries)
			}
		})
	}
}

func TestEncodeSegmentsResume(t *testing.T) {
	src := lavfiClip(t)
	dir := t.TempDir()
	opt := TranscodeOptions{Encode: EncodeOptions{CRF: 18, Preset: "ultrafast"}, SegmentSeconds: 1, WorkDir: dir, Workers: 2}
	crash := errors.New("worker died")
	var done []Segment
	opt.OnSegment = func(s Segment) error {
		done = append(done, s)
		if s.Index == 1 {
			return crash
		}
		return nil
	}
	if _, err := EncodeSegments(context.Background(), src, opt, stamping); !errors.Is(err, crash) {
		t.Fatalf("first attempt: %v, want the OnSegment error", err)
	}
	if len(done) != 2 {
		t.Fatalf("first attempt finished %d segments, want 2", len(done))
	}
	// The retry starts at segment 2 and must not touch frames before it.
	var seen atomic.Int64
	opt.StartSegment = 2
	opt.OnSegment = nil
	res, err := EncodeSegments(context.Background(), src, opt, func(f RawFrame) error {
		if f.Index < 50 {
			return fmt.Errorf("frame %d of a finished segment decoded again", f.Index)
		}
		seen.Add(1)
		return stamping(f)
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen.Load() != 50 || res.Frames != 100 || len(res.Segments) != 2 || res.Segments[0].Index != 2 {
		t.Fatalf("retry: transformed %d, total %d, segments %+v", seen.Load(), res.Frames, res.Segments)
	}
	// Every segment is there; nothing left half-written.
	var paths []string
	for i := range 4 {
		paths = append(paths, SegmentPath(dir, i))
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.part"))
	if len(left) != 0 {
		t.Fatalf("partial files left: %v", left)
	}
	dst := filepath.Join(t.TempDir(), "out.mp4")
	if err := MuxSegments(context.Background(), src, res.Stream, paths, dst); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, dst, 100)

	// A retry after the last segment finished has nothing left to encode.
	opt.StartSegment = 4
	res, err = EncodeSegments(context.Background(), src, opt, stamping)
	if err != nil || len(res.Segments) != 0 || res.Frames != 100 {
		t.Fatalf("retry after the end: %+v, %v", res, err)
	}
}

// TestEncodeSegmentsResumeSeek: a retry given the finished segments' Next
// seeks to its first segment and yields exactly the frames a decode from
// the start gives there (compared by FrameSum, before the transform), on a
// generated clip and on the four shared clips; a wrong StartSum or a
// variable-rate source falls back to decoding from the start, with the same
// frames.
func TestEncodeSegmentsResumeSeek(t *testing.T) {
	for _, c := range []struct {
		name, src string
		segSecs   float64
		crashAt   int // the first attempt stops after this segment
	}{
		{"lavfi", lavfiClip(t), 1, 1},
		{"car", testenv.SharedVideo(t, "car-detection.mp4"), 4, 2},
		// The other shared clips: 24 fps and 60 fps 1080p, 432p (about 50 s).
		{"sintel", testenv.SharedVideo(t, "Sintel_1080_10s_2MB.mp4"), 2, 2},
		{"bbb", testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4"), 2, 1},
		{"person", testenv.SharedVideo(t, "one-by-one-person-detection.mp4"), 5, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.name != "lavfi" && c.name != "car" {
				t.Skip("long: not in -short")
			}
			ctx := context.Background()
			var want []string
			vs, err := Decode(ctx, c.src, DecodeOptions{}, func(f RawFrame) error {
				want = append(want, FrameSum(slices.Concat(f.Y, f.U, f.V)))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !vs.ConstantRate {
				t.Fatalf("%s probes as variable-rate: %+v", c.name, vs)
			}
			opt := TranscodeOptions{Encode: EncodeOptions{CRF: 30, Preset: "ultrafast"}, SegmentSeconds: c.segSecs,
				WorkDir: t.TempDir(), Workers: 2}
			crash := errors.New("worker died")
			var done []Segment
			opt.OnSegment = func(s Segment) error {
				done = append(done, s)
				if s.Index == c.crashAt {
					return crash
				}
				return nil
			}
			if _, err := EncodeSegments(ctx, c.src, opt, stamping); !errors.Is(err, crash) {
				t.Fatalf("first attempt: %v, want the OnSegment error", err)
			}
			for _, s := range done {
				if next := s.FirstFrame + s.Frames; s.Next != want[next] {
					t.Fatalf("segment %d: Next %q, want the sum of frame %d, %q", s.Index, s.Next, next, want[next])
				}
			}
			opt.OnSegment = nil
			opt.StartSegment = c.crashAt + 1
			start := opt.StartSegment * done[0].Frames
			for _, tc := range []struct {
				name       string
				sum        string
				rate       bool // ConstantRate as probed
				wantSeeked bool
			}{
				{"seek", done[c.crashAt].Next, true, true},
				{"wrong sum", "0123456789abcdef", true, false},
				{"variable rate", done[c.crashAt].Next, false, false},
			} {
				o := opt
				o.StartSum = tc.sum
				s := vs
				s.ConstantRate = tc.rate
				o.Stream = &s
				var mu sync.Mutex
				got := map[int]string{}
				res, err := EncodeSegments(ctx, c.src, o, func(f RawFrame) error {
					sum := FrameSum(slices.Concat(f.Y, f.U, f.V))
					mu.Lock()
					got[f.Index] = sum
					mu.Unlock()
					return stamping(f)
				})
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if res.Seeked != tc.wantSeeked || res.Frames != len(want) || len(got) != len(want)-start {
					t.Fatalf("%s: seeked %t, %d frames in all, %d decoded; want seeked %t, %d and %d",
						tc.name, res.Seeked, res.Frames, len(got), tc.wantSeeked, len(want), len(want)-start)
				}
				for i := start; i < len(want); i++ {
					if got[i] != want[i] {
						t.Fatalf("%s: frame %d is not the source's frame %d", tc.name, i, i)
					}
				}
			}
		})
	}
}

// ffmpegChildren lists the ffmpeg processes whose parent is this process.
func ffmpegChildren(t *testing.T) []string {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < 0 {
			continue
		}
		fields := strings.Fields(s[close+1:])
		if len(fields) > 1 && s[open+1:close] == "ffmpeg" && fields[1] == strconv.Itoa(os.Getpid()) {
			out = append(out, p)
		}
	}
	return out
}

// TestEncodeSegmentsSample: a sample pass (SeekSeconds, MaxFrames) decodes
// from the seek point, the very frame a full decode has there on a
// constant-rate source, and encodes exactly MaxFrames frames in one segment;
// it refuses to be part of a resumable or whole pass, and a seek past the
// end does not make the source invalid.
func TestEncodeSegmentsSample(t *testing.T) {
	src := lavfiClip(t)
	var want [sha256.Size]byte
	if _, err := Decode(context.Background(), src, DecodeOptions{}, func(f RawFrame) error {
		if f.Index == 50 {
			want = sha256.Sum256(f.Y)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	opt := TranscodeOptions{Encode: EncodeOptions{CRF: 18, Preset: "ultrafast"}, SegmentSeconds: 1, WorkDir: t.TempDir(),
		SeekSeconds: 2, MaxFrames: 25}
	var first [sha256.Size]byte
	var mu sync.Mutex
	var indices []int
	res, err := EncodeSegments(context.Background(), src, opt, func(f RawFrame) error {
		mu.Lock()
		defer mu.Unlock()
		if f.Index == 0 {
			first = sha256.Sum256(f.Y)
		}
		indices = append(indices, f.Index)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(indices)
	if len(indices) != 25 || indices[0] != 0 || indices[24] != 24 || res.Frames != 25 || len(res.Segments) != 1 {
		t.Fatalf("sample: indices %v, frames %d, segments %+v", indices, res.Frames, res.Segments)
	}
	if first != want {
		t.Error("the sample's first frame is not the source's frame at 2 s")
	}
	n := 0
	if _, err := Decode(context.Background(), res.Segments[0].Path, DecodeOptions{}, func(RawFrame) error { n++; return nil }); err != nil || n != 25 {
		t.Fatalf("the sample's segment holds %d frames (%v), want 25", n, err)
	}
	// EncodeCenter: the sample encodes the central quarter of each frame,
	// on the macroblock grid (320x240 → 160x112), all of it through the
	// transform.
	centre := opt
	centre.WorkDir, centre.EncodeCenter = t.TempDir(), true
	var full atomic.Bool
	res, err = EncodeSegments(context.Background(), src, centre, func(f RawFrame) error {
		full.Store(f.Width == 320 && f.Height == 240)
		return nil
	})
	if err != nil || !full.Load() || len(res.Segments) != 1 {
		t.Fatalf("centre sample: %+v, %v; the transform saw whole frames: %t", res, err, full.Load())
	}
	if _, err := Decode(context.Background(), res.Segments[0].Path, DecodeOptions{MaxFrames: 1}, func(f RawFrame) error {
		if f.Width != 160 || f.Height != 112 {
			return fmt.Errorf("centre sample is %dx%d, want 160x112", f.Width, f.Height)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A seek past the end (a container's wrong duration) finds no frame:
	// an error, but not one that calls the source invalid.
	var invalid *InvalidError
	past := opt
	past.SeekSeconds = 60
	if _, err := EncodeSegments(context.Background(), src, past, func(RawFrame) error { return nil }); err == nil || errors.As(err, &invalid) {
		t.Errorf("seek past the end: %v, want a plain error", err)
	}
	for _, bad := range []TranscodeOptions{
		{StartSegment: 1, SeekSeconds: 2}, {Whole: true, MaxFrames: 10}, {SeekSeconds: -1}, {MaxFrames: -1},
		{EncodeCenter: true}, {SeekKeyframe: true, SeekSeconds: 2}, // not a sample
	} {
		bad.Encode, bad.WorkDir = opt.Encode, opt.WorkDir
		if _, err := EncodeSegments(context.Background(), src, bad, func(RawFrame) error { return nil }); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// TestEncodeSegmentsSampleKeyframe: with SeekKeyframe a sample starts at
// the keyframe before its seek point (keyframes every 30 frames: the seek
// to 2 s, frame 50, starts at frame 30), still MaxFrames long.
func TestEncodeSegmentsSampleKeyframe(t *testing.T) {
	src := testenv.Clip(t, "raw-testsrc2-320x240-25-4s-g30.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0")
	sums := map[int]string{}
	if _, err := Decode(context.Background(), src, DecodeOptions{}, func(f RawFrame) error {
		sums[f.Index] = FrameSum(f.Y)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		keyframe bool
		want     int
	}{{false, 50}, {true, 30}} {
		var mu sync.Mutex
		first := ""
		res, err := EncodeSegments(context.Background(), src, TranscodeOptions{Encode: EncodeOptions{CRF: 18, Preset: "ultrafast"},
			SegmentSeconds: 1, WorkDir: t.TempDir(), SeekSeconds: 2, MaxFrames: 25, SeekKeyframe: c.keyframe}, func(f RawFrame) error {
			mu.Lock()
			defer mu.Unlock()
			if f.Index == 0 {
				first = FrameSum(f.Y)
			}
			return nil
		})
		if err != nil || res.Frames != 25 {
			t.Fatalf("keyframe %t: %d frames, %v", c.keyframe, res.Frames, err)
		}
		if first != sums[c.want] {
			at := -1
			for i, s := range sums {
				if s == first {
					at = i
				}
			}
			t.Errorf("keyframe %t: the sample starts at frame %d, want %d", c.keyframe, at, c.want)
		}
	}
}

func TestEncodeSegmentsCancelKillsFFmpeg(t *testing.T) {
	src := testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := make(chan int, 1)
	go func() {
		<-running
		running <- len(ffmpegChildren(t))
		cancel()
	}()
	start := time.Now()
	_, err := EncodeSegments(ctx, src, TranscodeOptions{Encode: EncodeOptions{Preset: "ultrafast"}, WorkDir: t.TempDir()},
		func(f RawFrame) error {
			if f.Index == 30 {
				running <- 0
			}
			return nil
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := <-running; n != 2 {
		t.Fatalf("%d ffmpeg children while running, want 2 (decoder and encoder)", n)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatalf("cancellation took %v", time.Since(start))
	}
	if left := ffmpegChildren(t); len(left) != 0 {
		t.Fatalf("ffmpeg still running after cancel: %v", left)
	}
}

func TestEncodeSegmentsTransformError(t *testing.T) {
	src := lavfiClip(t)
	boom := errors.New("boom")
	dir := t.TempDir()
	_, err := EncodeSegments(context.Background(), src, TranscodeOptions{Encode: EncodeOptions{Preset: "ultrafast"}, WorkDir: dir},
		func(f RawFrame) error {
			if f.Index == 40 {
				return boom
			}
			return nil
		})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if left := ffmpegChildren(t); len(left) != 0 {
		t.Fatalf("ffmpeg still running: %v", left)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("files left after a failed first segment: %v", files)
	}
}

func TestCorruptInputIsInvalid(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.mp4")
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	if err := os.WriteFile(junk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(lavfiClip(t))
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.mp4")
	if err := os.WriteFile(truncated, good[:len(good)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello, this is not a video\n"), 0o644)
	for _, p := range []string{junk, truncated, text} {
		_, err := Transcode(context.Background(), p, filepath.Join(dir, "out.mp4"), TranscodeOptions{Encode: EncodeOptions{Preset: "ultrafast"}},
			func(RawFrame) error { return nil })
		if err == nil {
			t.Errorf("%s: transcode succeeded", filepath.Base(p))
		} else if !IsInvalid(err) {
			t.Errorf("%s: %v, want an InvalidError", filepath.Base(p), err)
		}
		if _, err := Decode(context.Background(), p, DecodeOptions{}, func(RawFrame) error { return nil }); !IsInvalid(err) {
			t.Errorf("%s: decode: %v, want an InvalidError", filepath.Base(p), err)
		}
	}
}

func TestDecodeBounded(t *testing.T) {
	src := testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	n := 0
	vs, err := Decode(context.Background(), src, DecodeOptions{MaxWidth: 640, MaxHeight: 640, MaxSeconds: 2}, func(f RawFrame) error {
		if f.Width != 640 || f.Height != 360 || len(f.Y) != 640*360 || len(f.U) != 320*180 || f.Index != n {
			return fmt.Errorf("frame %d: %dx%d, index %d", n, f.Width, f.Height, f.Index)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 120 || vs.Rate != "60/1" {
		t.Fatalf("%d frames at %s, want 120 at 60/1 (2 s)", n, vs.Rate)
	}
	n = 0
	if _, err := Decode(context.Background(), src, DecodeOptions{MaxFPS: 10, MaxSeconds: 3}, func(RawFrame) error { n++; return nil }); err != nil || n != 30 {
		t.Fatalf("MaxFPS 10 over 3 s: %d frames, %v; want 30", n, err)
	}
	n = 0
	if _, err := Decode(context.Background(), src, DecodeOptions{MaxFrames: 7}, func(RawFrame) error { n++; return nil }); err != nil || n != 7 {
		t.Fatalf("MaxFrames 7: %d frames, %v", n, err)
	}
}

// TestDecodeKeyframes: only keyframes come out, spaced as asked.
func TestDecodeKeyframes(t *testing.T) {
	src := filepath.Join(t.TempDir(), "gop25.mp4")
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", src).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	for _, c := range []struct {
		spacing float64
		want    int
	}{{0, 4}, {1.5, 2}, {10, 1}} {
		n := 0
		if _, err := Decode(context.Background(), src, DecodeOptions{Keyframes: true, KeySpacing: c.spacing}, func(f RawFrame) error {
			if f.Width != 320 || f.Height != 240 {
				return fmt.Errorf("frame %dx%d", f.Width, f.Height)
			}
			n++
			return nil
		}); err != nil || n != c.want {
			t.Errorf("keyframes %.1f s apart: %d frames, %v; want %d", c.spacing, n, err, c.want)
		}
	}
}

func TestDecodeImage(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 101, 77)) // odd sizes are cropped to even
	for y := range 77 {
		for x := range 101 {
			img.SetGray(x, y, color.Gray{Y: uint8(x * 2)})
		}
	}
	p := filepath.Join(t.TempDir(), "still.png")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	png.Encode(f, img)
	f.Close()
	var frames []RawFrame
	vs, err := Decode(context.Background(), p, DecodeOptions{MaxFPS: 5}, func(f RawFrame) error {
		frames = append(frames, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !vs.Still || len(frames) != 1 || frames[0].Width != 100 || frames[0].Height != 76 {
		t.Fatalf("%d frames, first %dx%d; want 1 of 100x76", len(frames), frames[0].Width, frames[0].Height)
	}
}

func TestChooseRate(t *testing.T) {
	for _, tc := range []struct{ r, avg, want string }{
		{"30000/1001", "30000/1001", "30000/1001"},
		{"60/1", "2997/50", "60/1"},         // within 1%
		{"90000/1", "24/1", "24/1"},         // timebase, not a rate
		{"30/1", "1500/71", "1500/71"},      // VFR: the average
		{"0/0", "0/0", "25/1"},              // nothing usable
		{"25/1", "0/0", "25/1"},             // images
		{"1e3", "-1/2", "25/1"},             // garbage
		{"24/1;x", "24/1,drawtext", "25/1"}, // never into a filter graph
	} {
		if got, _ := chooseRate(tc.r, tc.avg); got != tc.want {
			t.Errorf("chooseRate(%q, %q) = %q, want %q", tc.r, tc.avg, got, tc.want)
		}
	}
}

// TestColourTags: only colour names the encoder's options accept reach its
// command line; the rest leave the rendition untagged in that respect.
func TestColourTags(t *testing.T) {
	vs, err := parseRawProbe([]byte(`{"streams":[{"codec_type":"video","width":64,"height":64,"r_frame_rate":"25/1",
		"avg_frame_rate":"25/1","color_space":"unknown","color_primaries":"jedec-p22","color_transfer":"bt709"}],
		"format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"2"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if vs.Colour != (Colour{Transfer: "bt709"}) {
		t.Fatalf("colour %+v, want only the transfer", vs.Colour)
	}
	if got := strings.Join(vs.colourArgs(), " "); got != "-color_range tv -color_trc bt709" {
		t.Fatalf("encoder arguments %q", got)
	}
	for _, evil := range []string{"bt709 -y", "-i", "bt709,drawtext", ""} {
		if c := colourOf(&probeStream{ColorSpace: evil, ColorPrimaries: evil, ColorTransfer: evil}); c != (Colour{}) {
			t.Errorf("%q kept: %+v", evil, c)
		}
	}
}

func TestEncodeOptionsValidate(t *testing.T) {
	if err := (EncodeOptions{}).WithDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, o := range []EncodeOptions{{CRF: -1, Preset: "fast"}, {CRF: 0, Preset: "fast"}, {CRF: 52, Preset: "fast"}, {CRF: 23, Preset: "fast; rm"}} {
		if o.Validate() == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestTranscodeBench times Transcode (marking every frame with the real
// watermark embedder) against a plain ffmpeg libx264 transcode of the same
// clip at the same CRF/preset, alternating, plus the pass's phases. It
// reports the ratio of the medians and the median of the per-pair ratios
// (a pair runs back to back, so it shares the box's speed of the moment,
// which drifts by a third here). It asserts nothing about speed; opt-in
// with LESSONFLOW_BENCH_TRANSCODE=1, LESSONFLOW_BENCH_CLIP=<shared clip
// name> (default car-detection.mp4), LESSONFLOW_BENCH_RUNS (default 5),
// LESSONFLOW_BENCH_MARK=plain.
func TestTranscodeBench(t *testing.T) {
	if os.Getenv("LESSONFLOW_BENCH_TRANSCODE") == "" {
		t.Skip("a benchmark: run with LESSONFLOW_BENCH_TRANSCODE=1")
	}
	name := cmp.Or(os.Getenv("LESSONFLOW_BENCH_CLIP"), "car-detection.mp4")
	src := testenv.SharedVideo(t, name)
	kr, err := watermark.ParseKeyring("bench:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	if err != nil {
		t.Fatal(err)
	}
	emb, err := watermark.NewEmbedder(kr.Current)
	if err != nil {
		t.Fatal(err)
	}
	const payload = watermark.Payload(0x5eed0123456789ab)
	// A fresh marker per pass, as the activity makes one per video; with
	// LESSONFLOW_BENCH_MARK=plain, the plain mark (no host cancellation).
	var marker *watermark.VideoMarker
	plainMark := os.Getenv("LESSONFLOW_BENCH_MARK") == "plain"
	mark := func(f RawFrame) error {
		frame := watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width}
		if plainMark {
			return emb.Mark(frame, payload)
		}
		return marker.Mark(context.Background(), frame, f.Index)
	}
	fresh := func(fn func(RawFrame) error) func(RawFrame) error {
		marker = emb.Video(payload, watermark.GridFine, 0)
		return fn
	}
	dir := t.TempDir()
	enc := EncodeOptions{CRF: 23, Preset: "veryfast"}
	median := func(fn func()) time.Duration {
		var d []time.Duration
		for range 5 {
			start := time.Now()
			fn()
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		return d[2]
	}
	ctx := context.Background()
	// The pass and plain ffmpeg alternate, so both see the same load.
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("LESSONFLOW_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	var res TranscodeResult
	var passes, plains []time.Duration
	var ratios []float64
	for range runs {
		start := time.Now()
		if res, err = Transcode(ctx, src, filepath.Join(dir, "pass.mp4"), TranscodeOptions{Encode: enc}, fresh(mark)); err != nil {
			t.Fatal(err)
		}
		passes = append(passes, time.Since(start))
		start = time.Now()
		if out, err := runCmd("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src, "-c:v", "libx264", "-crf", "23",
			"-preset", "veryfast", "-c:a", "copy", filepath.Join(dir, "plain.mp4")); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		plains = append(plains, time.Since(start))
		ratios = append(ratios, passes[len(passes)-1].Seconds()/plains[len(plains)-1].Seconds())
	}
	slices.Sort(passes)
	slices.Sort(plains)
	slices.Sort(ratios)
	pass, plain := passes[runs/2], plains[runs/2]
	// Phases, each on its own.
	probe := median(func() {
		if _, err := ProbeStream(ctx, src); err != nil {
			t.Fatal(err)
		}
	})
	decode := median(func() {
		if _, err := Decode(ctx, src, DecodeOptions{}, func(RawFrame) error { return nil }); err != nil {
			t.Fatal(err)
		}
	})
	var markTime time.Duration
	fresh(nil)
	if _, err := Decode(ctx, src, DecodeOptions{}, func(f RawFrame) error {
		start := time.Now()
		defer func() { markTime += time.Since(start) }()
		return mark(f)
	}); err != nil {
		t.Fatal(err)
	}
	noMark := median(func() {
		if _, err := Transcode(ctx, src, filepath.Join(dir, "nomark.mp4"), TranscodeOptions{Encode: enc},
			func(RawFrame) error { return nil }); err != nil {
			t.Fatal(err)
		}
	})
	paths := make([]string, len(res.Segments))
	segDir := filepath.Join(dir, "segs")
	opt := TranscodeOptions{Encode: enc, WorkDir: segDir}
	encodeOnly := median(func() {
		os.RemoveAll(segDir)
		r, err := EncodeSegments(ctx, src, opt, fresh(mark))
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range r.Segments {
			paths[i] = s.Path
		}
	})
	mux := median(func() {
		if err := MuxSegments(ctx, src, res.Stream, paths, filepath.Join(dir, "mux.mp4")); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%s: %d frames %dx%d, %d segment(s) of %d frames, GOMAXPROCS %d", name, res.Frames, res.Stream.Width,
		res.Stream.Height, len(res.Segments), res.SegmentFrames, runtime.GOMAXPROCS(0))
	t.Logf("median of %d: Transcode %.3f s, plain ffmpeg %.3f s = %.2fx; per-pair ratios %.2f-%.2f, median %.2fx", runs,
		pass.Seconds(), plain.Seconds(), pass.Seconds()/plain.Seconds(), ratios[0], ratios[runs-1], ratios[runs/2])
	t.Logf("phases: probe %.3f s, decode only %.3f s, marking (one core) %.3f s, Transcode without marking %.3f s, "+
		"EncodeSegments %.3f s, MuxSegments %.3f s", probe.Seconds(), decode.Seconds(), markTime.Seconds(),
		noMark.Seconds(), encodeOnly.Seconds(), mux.Seconds())
}

func TestSegmentFrames(t *testing.T) {
	for _, c := range []struct {
		w, h int
		fps  float64
		secs float64
		want int
	}{
		{1920, 1080, 30, 0, 600},   // 20 s: more work than the minimum
		{1280, 720, 30, 0, 600},    // exactly the minimum work
		{768, 432, 12.5, 0, 1667},  // small frames: longer segments, same work
		{640, 360, 25, 0, 2400},    //
		{3840, 2160, 60, 0, 1200},  // never under 20 s
		{768, 432, 12.5, 10, 125},  // explicit seconds win
		{320, 240, 25, 1, 25},      //
		{0, 0, 25, 0, 500},         // unknown size: seconds
		{1920, 1080, 0.01, 0.1, 1}, // at least one frame
	} {
		vs := VideoStream{Width: c.w, Height: c.h, FPS: c.fps}
		if got := SegmentFrames(vs, c.secs); got != c.want {
			t.Errorf("%dx%d at %g fps, %g s: %d frames, want %d", c.w, c.h, c.fps, c.secs, got, c.want)
		}
	}
}

// TestResumeBench times a retry of the last segment of a minute of 1080p60
// (Big Buck Bunny's 10 s looped 6 times; 10-s segments, x264 veryfast CRF
// 23) resumed by an input seek and by decoding and dropping the 50 s
// before it, alternating, and prints medians and the per-pair ratios.
func TestResumeBench(t *testing.T) {
	if os.Getenv("LESSONFLOW_BENCH_RESUME") == "" {
		t.Skip("a benchmark: run with LESSONFLOW_BENCH_RESUME=1")
	}
	src := testenv.Clip(t, "resume-bench-bbb-1080p60-60s.mp4", "-stream_loop", "5",
		"-i", testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4"), "-c", "copy")
	ctx := context.Background()
	opt := TranscodeOptions{Encode: EncodeOptions{CRF: 23, Preset: "veryfast"}, SegmentSeconds: 10, WorkDir: t.TempDir()}
	crash := errors.New("worker died")
	var next string
	opt.OnSegment = func(s Segment) error {
		if s.Index == 4 {
			next = s.Next
			return crash
		}
		return nil
	}
	if _, err := EncodeSegments(ctx, src, opt, func(RawFrame) error { return nil }); !errors.Is(err, crash) {
		t.Fatalf("first attempt: %v", err)
	}
	opt.OnSegment, opt.StartSegment = nil, 5
	run := func(sum string) time.Duration {
		o := opt
		o.StartSum = sum
		start := time.Now()
		res, err := EncodeSegments(ctx, src, o, func(RawFrame) error { return nil })
		if err != nil || res.Seeked != (sum != "") || len(res.Segments) != 1 {
			t.Fatalf("resume (sum %q): %+v, %v", sum, res, err)
		}
		return time.Since(start)
	}
	var seek, full []time.Duration
	var ratios []float64
	for range 3 {
		s, f := run(next), run("")
		seek, full = append(seek, s), append(full, f)
		ratios = append(ratios, f.Seconds()/s.Seconds())
	}
	slices.Sort(seek)
	slices.Sort(full)
	slices.Sort(ratios)
	t.Logf("resume of the last 10-s segment of 60 s of 1080p60, medians of 3: by seek %.2f s, decoding from the start %.2f s: %.2fx (pairs %.2f-%.2f)",
		seek[1].Seconds(), full[1].Seconds(), full[1].Seconds()/seek[1].Seconds(), ratios[0], ratios[2])
}
