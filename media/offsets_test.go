package media

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lessonflow/lessonflow/internal/testenv"
)

// offsetsFor is a random offsets plane of w x h (128 ± up to 40, so that
// saturation shows) and the transform that adds it in Go.
func offsetsFor(w, h int, seed uint64) ([]byte, func(RawFrame) error) {
	r := rand.New(rand.NewPCG(seed, 1))
	off := make([]byte, w*h)
	for i := range off {
		off[i] = byte(88 + r.IntN(81))
	}
	return off, func(f RawFrame) error {
		for i, v := range f.Y {
			f.Y[i] = byte(max(0, min(255, int(v)+int(off[i])-128)))
		}
		return nil
	}
}

// lumaFrames decodes path's luma planes.
func lumaFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	var frames [][]byte
	if _, err := Decode(context.Background(), path, DecodeOptions{}, func(f RawFrame) error {
		frames = append(frames, slices.Clone(f.Y))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return frames
}

func lumaPSNR(a, b []byte) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255*float64(len(a))/se)
}

// TestLumaOffsetsMatchPipe: the one-process pass makes the segments the
// pipe makes with a transform adding the same offsets: the same cuts, the
// same fingerprints of the frame after each (Segment.Next), and frame for
// frame the same decoded pictures (x264 gets the same frames with the same
// settings). Whole passes, segmented ones, resumes from a later segment
// (by a seek checked against StartSum, or from the start when the sum is
// missing or wrong), a rotated source and a full-range one; offsets of the
// wrong size fall back to the pipe, with the same result. All of it again
// with a plane per block of 16 frames (OffsetBlocks), which the 25-frame
// segments cut mid-block: a resume starts inside a block.
func TestLumaOffsetsMatchPipe(t *testing.T) {
	clip := lavfiClip(t)
	rotated := filepath.Join(t.TempDir(), "rotated.mp4")
	if out, err := runCmd("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", clip, "-c", "copy", "-metadata:s:v", "rotate=90", rotated); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Full range (yuvj420p): the blend must see the frames the pipe's
	// decoder hands Go, converted to limited range, not the plane converted.
	fullRange := testenv.Clip(t, "raw-testsrc2-320x240-25-4s-full-range.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
		"-vf", "scale=out_range=full,format=yuvj420p", "-c:v", "libx264", "-preset", "ultrafast", "-color_range", "pc")
	ctx := context.Background()
	// The fingerprints a resume checks its seek against.
	first, err := EncodeSegments(ctx, clip, TranscodeOptions{Encode: EncodeOptions{Preset: "ultrafast"}, SegmentSeconds: 1, WorkDir: t.TempDir()},
		func(RawFrame) error { return nil })
	if err != nil || len(first.Segments) != 4 || first.Segments[1].Next == "" {
		t.Fatalf("pipe pass: %+v, %v", first, err)
	}
	for _, blocks := range []bool{false, true} {
		for _, c := range []struct {
			name   string
			src    string
			whole  bool
			start  int
			sum    string // StartSum
			seeked bool
			wrong  bool // offsets of another size: the pipe takes over
		}{
			{name: "segments", src: clip},
			{name: "whole", src: clip, whole: true},
			{name: "resume by seek", src: clip, start: 2, sum: first.Segments[1].Next, seeked: true},
			{name: "resume without a sum", src: clip, start: 2},
			{name: "resume with a wrong sum", src: clip, start: 2, sum: "0123456789abcdef"},
			{name: "rotated", src: rotated},
			{name: "full range", src: fullRange},
			{name: "fallback", src: clip, start: 1, sum: first.Segments[0].Next, seeked: true, wrong: true},
			{name: "whole fallback", src: clip, whole: true, wrong: true},
		} {
			name := c.name
			if blocks {
				name += " by blocks"
			}
			t.Run(name, func(t *testing.T) {
				vs, err := ProbeStream(ctx, c.src)
				if err != nil {
					t.Fatal(err)
				}
				w, h := vs.DecodedSize()
				if c.src == rotated && (!vs.Rotated || w != 240 || h != 320) {
					t.Fatalf("rotated clip: %+v decodes to %dx%d, want 240x320", vs, w, h)
				}
				off, add := offsetsFor(w, h, 7)
				const blockFrames = 16
				planes := map[int][]byte{}
				for b := range (100 + blockFrames - 1) / blockFrames {
					planes[b], _ = offsetsFor(w, h, uint64(100+b))
				}
				if blocks {
					add = func(f RawFrame) error {
						for i, v := range f.Y {
							f.Y[i] = byte(max(0, min(255, int(v)+int(planes[f.Index/blockFrames][i])-128)))
						}
						return nil
					}
				}
				var transformed atomic.Int64
				counting := func(f RawFrame) error { transformed.Add(1); return add(f) }
				run := func(offsets []byte) (TranscodeResult, []Segment, []int) {
					var reported []Segment
					var progress []int
					opt := TranscodeOptions{Encode: EncodeOptions{CRF: 23, Preset: "ultrafast"}, SegmentSeconds: 1,
						WorkDir: t.TempDir(), StartSegment: c.start, StartSum: c.sum, Whole: c.whole, LumaOffsets: offsets,
						OnSegment: func(s Segment) error { reported = append(reported, s); return nil },
						Progress:  func(n int) { progress = append(progress, n) }}
					if blocks && offsets != nil {
						opt.LumaOffsets = nil
						opt.OffsetBlocks = &OffsetBlocks{Frames: blockFrames, Plane: func(_ context.Context, b int) ([]byte, error) {
							p, ok := planes[b]
							if !ok {
								return nil, io.EOF
							}
							return p[:len(offsets)], nil // short when offsets is
						}}
					}
					res, err := EncodeSegments(ctx, c.src, opt, counting)
					if err != nil {
						t.Fatal(err)
					}
					if left, _ := filepath.Glob(filepath.Join(opt.WorkDir, "*.part")); len(left) > 0 {
						t.Fatalf("partial files left: %v", left)
					}
					return res, reported, progress
				}
				pipe, pipeSegs, pipeProgress := run(nil)
				piped := transformed.Swap(0)
				offsets := off
				if c.wrong {
					offsets = off[:len(off)-2]
				}
				one, oneSegs, oneProgress := run(offsets)
				switch {
				case c.wrong && transformed.Load() != piped:
					t.Fatalf("fallback transformed %d frames, the pipe %d", transformed.Load(), piped)
				case !c.wrong && transformed.Load() != 0:
					t.Fatalf("the one-process pass handed %d frames to the transform", transformed.Load())
				}
				if one.Seeked != c.seeked || pipe.Seeked != c.seeked {
					t.Fatalf("seeked: one process %t, pipe %t, want %t", one.Seeked, pipe.Seeked, c.seeked)
				}
				if one.Frames != pipe.Frames || len(oneSegs) != len(pipeSegs) || len(one.Segments) != len(oneSegs) {
					t.Fatalf("one process: %d frames, segments %+v; pipe: %d frames, %+v", one.Frames, oneSegs, pipe.Frames, pipeSegs)
				}
				if want := 100 - 25*c.start; len(pipeProgress) != want || len(oneProgress) != want || pipeProgress[want-1] != 100 ||
					!slices.IsSorted(oneProgress) || oneProgress[want-1] != 100 {
					t.Fatalf("progress: pipe %v, one process %v", pipeProgress, oneProgress)
				}
				for i := range pipeSegs {
					p, o := pipeSegs[i], oneSegs[i]
					if p.Index != o.Index || p.FirstFrame != o.FirstFrame || p.Frames != o.Frames || p.Next != o.Next {
						t.Fatalf("segment %d: pipe %+v, one process %+v", i, p, o)
					}
					pf, of := lumaFrames(t, p.Path), lumaFrames(t, o.Path)
					if len(pf) != p.Frames || len(of) != p.Frames {
						t.Fatalf("segment %d: %d frames decoded from the pipe's, %d from the one process's, want %d", i, len(pf), len(of), p.Frames)
					}
					// The first segment of a run starts both encoders alike: the
					// same pictures bit for bit. After it the one process's
					// encoder carries its rate control over and the pipe's starts
					// afresh, so they agree to within coding noise; a frame out of
					// place would not.
					for k := range pf {
						psnr := lumaPSNR(pf[k], of[k])
						if i == 0 && psnr != math.Inf(1) || psnr < 30 {
							t.Fatalf("segment %d frame %d: PSNR %.1f dB between the pipe's and the one process's", p.Index, k, psnr)
						}
					}
				}
				if c.whole {
					v, a := testenv.CountPackets(t, oneSegs[0].Path)
					if v != 100 || a == 0 {
						t.Fatalf("whole pass: %d video frames, %d audio packets", v, a)
					}
				}
			})
		}
	}
}

// TestLumaOffsetsStops: an OnSegment error ends the one-process pass (no
// fallback, no partial file), and so does a cancelled context.
func TestLumaOffsetsStops(t *testing.T) {
	src := lavfiClip(t)
	vs, err := ProbeStream(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	off, add := offsetsFor(vs.Width, vs.Height, 3)
	crash := errors.New("store down")
	dir := t.TempDir()
	var calls atomic.Int64
	_, err = EncodeSegments(context.Background(), src, TranscodeOptions{Encode: EncodeOptions{Preset: "ultrafast"}, SegmentSeconds: 1,
		WorkDir: dir, LumaOffsets: off, OnSegment: func(s Segment) error {
			if s.Index == 1 {
				return crash
			}
			return nil
		}}, func(f RawFrame) error { calls.Add(1); return add(f) })
	if !errors.Is(err, crash) || calls.Load() != 0 {
		t.Fatalf("err %v, transform calls %d; want the OnSegment error and no fallback", err, calls.Load())
	}
	if _, err := os.Stat(SegmentPath(dir, 0)); err != nil {
		t.Errorf("segment 0 was reported, so its file stays: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.part")); len(left) > 0 {
		t.Errorf("partial files left: %v", left)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := EncodeSegments(ctx, src, TranscodeOptions{Encode: EncodeOptions{Preset: "ultrafast"}, WorkDir: t.TempDir(), LumaOffsets: off}, add); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestRenditionKeepsColour: both passes tag the rendition with the source's
// colour description (the y4m pipe does not carry it) and limited range (a
// full-range source is converted on decode); an untagged source stays
// untagged.
func TestRenditionKeepsColour(t *testing.T) {
	ctx := context.Background()
	const tags = "stream=color_range,color_space,color_primaries,color_transfer"
	clip := func(name string, args ...string) string {
		return testenv.Clip(t, name, append([]string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"},
			append(args, "-c:v", "libx264", "-preset", "ultrafast")...)...)
	}
	// want is in ffprobe's order: range|matrix|transfer|primaries.
	for _, c := range []struct{ name, src, want string }{
		// SD tagged BT.709, as a downscaled screen recording is: untagged,
		// a player would read it as BT.601.
		{"bt709", clip("colour-bt709-320x240.mp4", "-pix_fmt", "yuv420p",
			"-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"),
			"tv|bt709|bt709|bt709"},
		{"full range bt601", clip("colour-full-bt601-320x240.mp4", "-vf", "scale=out_range=full,format=yuvj420p",
			"-colorspace", "bt470bg", "-color_primaries", "bt470bg", "-color_trc", "smpte170m", "-color_range", "pc"),
			"tv|bt470bg|smpte170m|bt470bg"},
		{"untagged", clip("colour-untagged-320x240.mp4", "-pix_fmt", "yuv420p"), "unknown|unknown|unknown|unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs, err := ProbeStream(ctx, c.src)
			if err != nil {
				t.Fatal(err)
			}
			off, add := offsetsFor(vs.Width, vs.Height, 5)
			for _, offsets := range [][]byte{nil, off} {
				res, err := EncodeSegments(ctx, c.src, TranscodeOptions{Encode: EncodeOptions{Preset: "ultrafast"},
					WorkDir: t.TempDir(), Whole: true, LumaOffsets: offsets}, add)
				if err != nil {
					t.Fatal(err)
				}
				out, err := runCmd("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", tags,
					"-of", "compact=p=0:nk=1", res.Segments[0].Path)
				if got := strings.TrimSpace(out); err != nil || got != c.want {
					t.Fatalf("one process %t: rendition tags %q (%v), want %q", offsets != nil, got, err, c.want)
				}
			}
		})
	}
}
