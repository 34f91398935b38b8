package media

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/internal/testenv"
)

func TestProbeSharedVideos(t *testing.T) {
	testenv.RequireFFmpeg(t)
	cases := []struct {
		name       string
		w, h       int
		fps        float64
		durationMS int64
		hasAudio   bool
	}{
		{"Big_Buck_Bunny_1080_10s_2MB.mp4", 1920, 1080, 60, 10000, false},
		{"Sintel_1080_10s_2MB.mp4", 1920, 1080, 24, 10000, false},
		{"car-detection.mp4", 768, 432, 12.5, 30200, true},
		{"one-by-one-person-detection.mp4", 768, 432, 10, 139400, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := Probe(t.Context(), testenv.SharedVideo(t, c.name), DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if info.Width != c.w || info.Height != c.h {
				t.Errorf("size %dx%d, want %dx%d", info.Width, info.Height, c.w, c.h)
			}
			if math.Abs(info.FPS-c.fps) > 0.01 {
				t.Errorf("fps %v, want %v", info.FPS, c.fps)
			}
			if d := info.DurationMS - c.durationMS; d < -100 || d > 100 {
				t.Errorf("duration %d ms, want %d", info.DurationMS, c.durationMS)
			}
			if info.Codec != "h264" || info.PixFmt != "yuv420p" || !strings.Contains(info.Format, "mp4") {
				t.Errorf("codec %q pix_fmt %q format %q", info.Codec, info.PixFmt, info.Format)
			}
			if info.BitRate <= 0 {
				t.Errorf("bit rate %d", info.BitRate)
			}
			if info.HasAudio != c.hasAudio || (c.hasAudio && info.AudioCodec != "aac") {
				t.Errorf("audio %v %q, want %v", info.HasAudio, info.AudioCodec, c.hasAudio)
			}
		})
	}
}

func TestProbeInvalid(t *testing.T) {
	testenv.RequireFFmpeg(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	head := func(name, src string, frac float64) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, b[:int(float64(len(b))*frac)])
	}
	copyAs := func(name, src string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, b)
	}
	bbb := testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	// The shared clips are "faststart" (index first); a plain remux puts the
	// index at the end, so cutting it loses the index.
	moovLast := testenv.Clip(t, "car-moov-last.mp4", "-i", testenv.SharedVideo(t, "car-detection.mp4"), "-c", "copy")
	png := testenv.Clip(t, "still-64.png", "-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1")
	audio := testenv.Clip(t, "sine-2s.m4a", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac")
	coverArt := testenv.Clip(t, "sine-cover.mp3", "-f", "lavfi", "-i", "sine=duration=2", "-i", png,
		"-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "png", "-disposition:v", "attached_pic")
	small := testenv.Clip(t, "testsrc2-64x64-3s.mp4", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=3",
		"-c:v", "libx264", "-pix_fmt", "yuv420p")

	cases := []struct {
		name   string
		path   string
		lim    Limits
		reason string
	}{
		{"empty", write("empty.mp4", nil), DefaultLimits, "empty file"},
		{"truncated faststart", head("bbb-30.mp4", bbb, 0.3), DefaultLimits, "file is truncated"},
		{"truncated index last", head("car-30.mp4", moovLast, 0.3), DefaultLimits, "not a readable video file: moov atom not found"},
		{"png renamed", copyAs("png.mp4", png), DefaultLimits, "not a video (an image)"},
		{"pdf renamed", write("doc.mp4", []byte("%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")),
			DefaultLimits, "not a readable video file:"},
		{"audio only", copyAs("audio.mp4", audio), DefaultLimits, "no video stream (audio only)"},
		{"audio with cover art", copyAs("cover.mp4", coverArt), DefaultLimits, "no video stream (audio only)"},
		{"resolution over limit", small, Limits{MaxDuration: time.Hour, MaxWidth: 32, MaxHeight: 32},
			"resolution 64x64 exceeds the limit of 32x32"},
		{"duration over limit", small, Limits{MaxDuration: 2 * time.Second, MaxWidth: 4096, MaxHeight: 2160},
			"video is too long: 3s, the limit is 2s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Probe(t.Context(), c.path, c.lim)
			if !IsInvalid(err) {
				t.Fatalf("err = %v, want InvalidError", err)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("err = %q, want reason containing %q", err, c.reason)
			}
			if strings.Contains(err.Error(), dir) || strings.Contains(err.Error(), " @ 0x") {
				t.Errorf("reason leaks a path or log prefix: %q", err)
			}
			t.Log(err)
		})
	}
}

func TestProbeRetryableErrors(t *testing.T) {
	testenv.RequireFFmpeg(t)
	clip := testenv.SharedVideo(t, "car-detection.mp4")

	_, err := Probe(t.Context(), filepath.Join(t.TempDir(), "missing.mp4"), DefaultLimits)
	if err == nil || IsInvalid(err) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want a not-exist error that is not InvalidError", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Probe(ctx, clip, DefaultLimits); err == nil || IsInvalid(err) {
		t.Errorf("cancelled: %v, want a non-invalid error", err)
	}

	t.Setenv("PATH", t.TempDir()) // no ffprobe
	if _, err := Probe(t.Context(), clip, DefaultLimits); err == nil || IsInvalid(err) || !strings.Contains(err.Error(), "ffprobe") {
		t.Errorf("no ffprobe: %v, want a non-invalid error", err)
	}
}

// realProbeJSON returns ffprobe's output for a shared clip.
func realProbeJSON(t testing.TB, name string) []byte {
	t.Helper()
	testenv.RequireFFmpeg(t)
	out, err := exec.Command("ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
		testenv.SharedVideo(t, name)).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", name, err)
	}
	return out
}

// edit decodes ffprobe JSON, applies f and encodes it again.
func edit(t *testing.T, data []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func stream0(m map[string]any) map[string]any {
	return m["streams"].([]any)[0].(map[string]any)
}

func TestParseProbe(t *testing.T) {
	bbb := realProbeJSON(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	valid := func(name string, data []byte, lim Limits, check func(Info)) {
		t.Run(name, func(t *testing.T) {
			info, err := ParseProbe(data, lim)
			if err != nil {
				t.Fatal(err)
			}
			check(info)
		})
	}
	invalid := func(name string, data []byte, lim Limits, reason string) {
		t.Run(name, func(t *testing.T) {
			_, err := ParseProbe(data, lim)
			if !IsInvalid(err) || !strings.Contains(err.Error(), reason) {
				t.Fatalf("err = %v, want InvalidError with %q", err, reason)
			}
		})
	}

	valid("portrait 4K within landscape limits", edit(t, bbb, func(m map[string]any) {
		s := stream0(m)
		s["width"], s["height"] = 2160, 4096
		delete(s, "bit_rate")
	}), DefaultLimits, func(i Info) {
		if i.Width != 2160 || i.Height != 4096 {
			t.Errorf("got %dx%d", i.Width, i.Height)
		}
	})
	invalid("portrait too wide", edit(t, bbb, func(m map[string]any) {
		s := stream0(m)
		s["width"], s["height"] = 2200, 4096
	}), DefaultLimits, "resolution 2200x4096 exceeds")
	valid("rotated phone video reports display size", edit(t, bbb, func(m map[string]any) {
		stream0(m)["side_data_list"] = []any{map[string]any{"side_data_type": "Display Matrix", "rotation": -90}}
	}), DefaultLimits, func(i Info) {
		if i.Width != 1080 || i.Height != 1920 {
			t.Errorf("got %dx%d", i.Width, i.Height)
		}
	})
	valid("avg_frame_rate 0/0 falls back to r_frame_rate", edit(t, bbb, func(m map[string]any) {
		s := stream0(m)
		s["avg_frame_rate"], s["r_frame_rate"] = "0/0", "30000/1001"
	}), DefaultLimits, func(i Info) {
		if math.Abs(i.FPS-29.97) > 0.01 {
			t.Errorf("fps %v", i.FPS)
		}
	})
	valid("stream duration when the format has none", edit(t, bbb, func(m map[string]any) {
		delete(m["format"].(map[string]any), "duration")
		stream0(m)["duration"] = "7.5"
	}), DefaultLimits, func(i Info) {
		if i.DurationMS != 7500 {
			t.Errorf("duration %d", i.DurationMS)
		}
	})
	valid("zero limits mean defaults", bbb, Limits{}, func(Info) {})
	valid("cover art before the video is skipped", edit(t, bbb, func(m map[string]any) {
		cover := map[string]any{"codec_type": "video", "codec_name": "mjpeg", "width": 600, "height": 600,
			"disposition": map[string]any{"attached_pic": 1}}
		m["streams"] = append([]any{cover}, m["streams"].([]any)...)
	}), DefaultLimits, func(i Info) {
		if i.Codec != "h264" || i.Width != 1920 {
			t.Errorf("picked %s %dx%d", i.Codec, i.Width, i.Height)
		}
	})

	invalid("malformed JSON", []byte(`{"streams": [`), DefaultLimits, "unreadable probe output")
	invalid("too large", append(append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), maxProbeJSON)...), `"}`...),
		DefaultLimits, "too large")
	invalid("no streams", []byte(`{"streams":[],"format":{"format_name":"mov"}}`), DefaultLimits, "no video stream")
	invalid("single PNG frame in MP4", edit(t, bbb, func(m map[string]any) {
		s := stream0(m)
		s["codec_name"], s["nb_frames"] = "png", "1"
	}), DefaultLimits, "not a video (an image)")
	invalid("mjpeg without duration", []byte(`{"streams":[{"codec_type":"video","codec_name":"mjpeg","width":64,"height":64,"avg_frame_rate":"25/1"}],"format":{"format_name":"mjpeg"}}`),
		DefaultLimits, "not a video (an image)")
	invalid("zero duration", edit(t, bbb, func(m map[string]any) {
		m["format"].(map[string]any)["duration"] = "0.000000"
		stream0(m)["duration"] = "N/A"
	}), DefaultLimits, "no duration")
	invalid("NaN duration", edit(t, bbb, func(m map[string]any) {
		m["format"].(map[string]any)["duration"] = "NaN"
		delete(stream0(m), "duration")
	}), DefaultLimits, "no duration")
	invalid("huge duration", edit(t, bbb, func(m map[string]any) {
		m["format"].(map[string]any)["duration"] = "1e300"
	}), DefaultLimits, "video is too long")
	invalid("garbage width", edit(t, bbb, func(m map[string]any) {
		stream0(m)["width"] = "wide"
	}), DefaultLimits, "no valid resolution")
	invalid("negative height", edit(t, bbb, func(m map[string]any) {
		stream0(m)["height"] = -1080
	}), DefaultLimits, "no valid resolution")
}

// FuzzParseProbe: ParseProbe never panics, and whatever it accepts is
// within the limits it was given.
func FuzzParseProbe(f *testing.F) {
	for _, name := range testenv.SharedVideos {
		f.Add(realProbeJSON(f, name), int64(0), 0, 0)
	}
	bbb := realProbeJSON(f, "Big_Buck_Bunny_1080_10s_2MB.mp4")
	f.Add(bbb, int64(5000), 1920, 1080)
	f.Add(bbb, int64(60000), 32, 32)
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"streams":null}`,
		`{"streams":[{"codec_type":"video","codec_name":"h264","width":1920,"height":1080,"avg_frame_rate":"60/0","r_frame_rate":"x/y"}],"format":{"duration":"10"}}`,
		`{"streams":[{"codec_type":"video","width":"1e9","height":1,"duration":"-1"}],"format":{"duration":"Infinity"}}`,
		`{"streams":[{"codec_type":"video","width":9223372036854775807,"height":2,"nb_frames":"1","codec_name":"png"}],"format":{"duration":"1","format_name":"png_pipe"}}`,
		`{"streams":[{"codec_type":"video","width":100,"height":100,"bit_rate":"1e308","nb_frames":"1e308","avg_frame_rate":"1/1e-300"}],"format":{"duration":"14400.0004","size":"1","format_name":"mov"}}`,
		`{"streams":[{"codec_type":"audio","codec_name":"aac"},{"codec_type":"video","disposition":{"attached_pic":1},"width":10,"height":10}],"format":{"duration":"3"}}`,
		`{"streams":[{"codec_type":"video","width":10,"height":10,"side_data_list":[{"rotation":"NaN"}],"tags":{"rotate":"1e400"}}],"format":{"duration":"0.0004"}}`,
	} {
		f.Add([]byte(s), int64(0), 0, 0)
	}
	f.Fuzz(func(t *testing.T, data []byte, maxDurMS int64, maxW, maxH int) {
		lim := Limits{MaxDuration: time.Duration(maxDurMS) * time.Millisecond, MaxWidth: maxW, MaxHeight: maxH}
		info, err := ParseProbe(data, lim)
		if err != nil {
			if !IsInvalid(err) {
				t.Fatalf("error is not InvalidError: %v", err)
			}
			return
		}
		lim = lim.WithDefaults()
		if info.DurationMS <= 0 || time.Duration(info.DurationMS)*time.Millisecond > lim.MaxDuration {
			t.Fatalf("duration %d ms outside (0, %s]", info.DurationMS, lim.MaxDuration)
		}
		if info.Width <= 0 || info.Height <= 0 ||
			max(info.Width, info.Height) > max(lim.MaxWidth, lim.MaxHeight) ||
			min(info.Width, info.Height) > min(lim.MaxWidth, lim.MaxHeight) {
			t.Fatalf("size %dx%d outside %dx%d", info.Width, info.Height, lim.MaxWidth, lim.MaxHeight)
		}
		if math.IsNaN(info.FPS) || math.IsInf(info.FPS, 0) || info.FPS < 0 || info.BitRate < 0 {
			t.Fatalf("fps %v bit rate %d", info.FPS, info.BitRate)
		}
	})
}
