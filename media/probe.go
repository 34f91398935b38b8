package media

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxProbeJSON caps the ffprobe output ParseProbe accepts. Real output is a few
// KiB; only a file with thousands of streams comes near this.
const maxProbeJSON = 4 << 20

// WithDefaults returns l with every zero or negative field replaced by the
// DefaultLimits value, so a zero Limits means "the defaults", never "nothing
// is allowed".
func (l Limits) WithDefaults() Limits {
	if l.MaxDuration <= 0 {
		l.MaxDuration = DefaultLimits.MaxDuration
	}
	if l.MaxWidth <= 0 {
		l.MaxWidth = DefaultLimits.MaxWidth
	}
	if l.MaxHeight <= 0 {
		l.MaxHeight = DefaultLimits.MaxHeight
	}
	return l
}

// Probe runs ffprobe on path and validates the result with ParseProbe.
//
// Input that ffprobe cannot read (not media, truncated, corrupt) or that
// ParseProbe rejects yields a bare *InvalidError, whose message holds no
// server path and can be shown as is. A missing ffprobe binary, a missing or
// unreadable file and a cancelled ctx yield ordinary (wrapped) errors, since
// a retry may succeed.
func Probe(ctx context.Context, path string, lim Limits) (Info, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Info{}, fmt.Errorf("probe %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return Info{}, fmt.Errorf("probe %s: not a regular file", path)
	}
	if st.Size() == 0 {
		return Info{}, &InvalidError{Reason: "empty file"}
	}
	input := "file:" + path // never a URL or another protocol
	cmd := exec.CommandContext(ctx, "ffprobe",
		"-hide_banner", "-v", "error",
		"-protocol_whitelist", "file", // nor may the file (a playlist) point at one
		"-print_format", "json", "-show_format", "-show_streams",
		input)
	stdout := &capWriter{max: maxProbeJSON + 1}
	stderr := &capWriter{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Info{}, fmt.Errorf("probe %s: %w", path, ctxErr)
		}
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || !exitErr.Exited() {
			// Not started (no ffprobe) or killed by a signal (e.g. OOM): retryable.
			return Info{}, fmt.Errorf("probe %s: ffprobe: %w", path, err)
		}
		msg := firstLine(stderr.String(), input)
		if isSystemFailure(stderr.String()) {
			return Info{}, fmt.Errorf("probe %s: ffprobe: %w: %s", path, err, msg)
		}
		if msg == "" {
			msg = "ffprobe " + err.Error()
		}
		return Info{}, &InvalidError{Reason: "not a readable video file: " + msg}
	}
	info, err := ParseProbe(stdout.Bytes(), lim)
	if err != nil {
		return Info{}, err // already an *InvalidError with a reason for the uploader
	}
	return info, nil
}

// isSystemFailure spots ffprobe failures caused by the machine rather than the
// file's content; those are retried instead of rejecting the upload.
func isSystemFailure(stderr string) bool {
	for _, s := range []string{
		"No such file or directory", "Permission denied", "Cannot allocate memory",
		"Input/output error", "Resource temporarily unavailable", "Too many open files",
	} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

// logPrefix matches the "[mov,mp4,... @ 0x55d1c0]" context ffmpeg puts in front
// of its messages: noise for an uploader, and it holds a pointer.
var logPrefix = regexp.MustCompile(`^\[[^\]]* @ 0x[0-9a-fA-F]+\]\s*`)

// firstLine returns the first non-empty line of ffmpeg's stderr, without the
// log context prefix and without the server-side file path, capped in length.
func firstLine(stderr, input string) string {
	for line := range strings.SplitSeq(stderr, "\n") {
		line = strings.TrimSpace(line)
		line = logPrefix.ReplaceAllString(line, "")
		line = strings.TrimPrefix(line, input+": ")
		line = strings.ReplaceAll(line, input, "input")
		if line == "" {
			continue
		}
		if len(line) > 200 {
			line = line[:200] + "..."
		}
		return strings.ToValidUTF8(line, "")
	}
	return ""
}

// flex holds a JSON scalar whatever its type: ffprobe prints some numbers as
// strings ("duration": "10.0") and others as numbers ("width": 1920), and
// garbage input must not make the whole document fail to parse.
type flex string

func (f *flex) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flex(s)
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*f = flex(b)
	default: // null, bool, object, array: treated as absent
		*f = ""
	}
	return nil
}

// float parses f as a finite float64.
func (f flex) float() (float64, bool) {
	v, err := strconv.ParseFloat(strings.TrimSpace(string(f)), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// int parses f as an int64 (ffprobe never prints fractional ints; "1e3" and
// "12.5" are rejected).
func (f flex) int() (int64, bool) {
	v, err := strconv.ParseInt(strings.TrimSpace(string(f)), 10, 64)
	return v, err == nil
}

type probeJSON struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		FormatName string `json:"format_name"`
		Duration   flex   `json:"duration"`
		Size       flex   `json:"size"`
		BitRate    flex   `json:"bit_rate"`
	} `json:"format"`
}

type probeStream struct {
	CodecName    string `json:"codec_name"`
	CodecType    string `json:"codec_type"`
	Width        flex   `json:"width"`
	Height       flex   `json:"height"`
	PixFmt       string `json:"pix_fmt"`
	AvgFrameRate string `json:"avg_frame_rate"`
	RFrameRate   string `json:"r_frame_rate"`
	Duration     flex   `json:"duration"`
	BitRate      flex   `json:"bit_rate"`
	NbFrames     flex   `json:"nb_frames"`
	// Colour description, as ffprobe names it ("unknown" when untagged).
	ColorSpace     string `json:"color_space"`
	ColorPrimaries string `json:"color_primaries"`
	ColorTransfer  string `json:"color_transfer"`
	Disposition    struct {
		AttachedPic flex `json:"attached_pic"`
		StillImage  flex `json:"still_image"`
	} `json:"disposition"`
	Tags struct {
		Rotate flex `json:"rotate"`
	} `json:"tags"`
	SideData []struct {
		Rotation flex `json:"rotation"`
	} `json:"side_data_list"`
}

// imageCodecs are codecs whose single-frame "videos" are still pictures.
var imageCodecs = map[string]bool{
	"png": true, "apng": true, "mjpeg": true, "jpeg2000": true, "jpegls": true,
	"bmp": true, "gif": true, "webp": true, "tiff": true, "ppm": true, "pgm": true,
	"pam": true, "targa": true, "sgi": true, "qoi": true, "exr": true, "dpx": true,
}

// ParseProbe validates ffprobe's JSON (-show_format -show_streams) against
// lim (zero fields fall back to DefaultLimits) and extracts the Info of the
// first video stream that is not cover art. Everything wrong with the input,
// including malformed JSON, is reported as an *InvalidError.
func ParseProbe(data []byte, lim Limits) (Info, error) {
	lim = lim.WithDefaults()
	if len(data) > maxProbeJSON {
		return Info{}, &InvalidError{Reason: "probe output too large (too many streams)"}
	}
	var p probeJSON
	if err := json.Unmarshal(data, &p); err != nil {
		return Info{}, &InvalidError{Reason: "unreadable probe output: " + err.Error()}
	}

	var video *probeStream
	var audio *probeStream
	for i := range p.Streams {
		s := &p.Streams[i]
		switch s.CodecType {
		case "video":
			if n, _ := s.Disposition.AttachedPic.int(); n != 0 {
				continue // cover art of an audio file
			}
			if video == nil {
				video = s
			}
		case "audio":
			if audio == nil {
				audio = s
			}
		}
	}
	if video == nil {
		if audio != nil {
			return Info{}, &InvalidError{Reason: "no video stream (audio only)"}
		}
		return Info{}, &InvalidError{Reason: "no video stream"}
	}

	format := p.Format.FormatName
	if isImage(format, video, p.Format.Duration) {
		return Info{}, &InvalidError{Reason: "not a video (an image)"}
	}

	info := Info{
		Format: format,
		Codec:  video.CodecName,
		PixFmt: video.PixFmt,
	}
	if audio != nil {
		info.HasAudio = true
		info.AudioCodec = audio.CodecName
	}

	// Duration: the container's, else the video stream's.
	sec, ok := p.Format.Duration.float()
	if !ok || sec <= 0 {
		sec, ok = video.Duration.float()
	}
	if !ok || sec <= 0 {
		return Info{}, &InvalidError{Reason: "video has no duration"}
	}
	if sec > lim.MaxDuration.Seconds() || sec > 1e9 {
		return Info{}, &InvalidError{Reason: fmt.Sprintf("video is too long: %s, the limit is %s",
			fmtSeconds(sec), lim.MaxDuration)}
	}
	info.DurationMS = int64(math.Round(sec * 1000))
	if info.DurationMS < 1 {
		return Info{}, &InvalidError{Reason: "video has no duration"}
	}
	if info.DurationMS > lim.MaxDuration.Milliseconds() {
		return Info{}, &InvalidError{Reason: fmt.Sprintf("video is too long: %s, the limit is %s",
			time.Duration(info.DurationMS)*time.Millisecond, lim.MaxDuration)}
	}

	w, okW := video.Width.int()
	h, okH := video.Height.int()
	if !okW || !okH || w <= 0 || h <= 0 {
		return Info{}, &InvalidError{Reason: "video has no valid resolution"}
	}
	long, short := max(w, h), min(w, h)
	limLong, limShort := max(lim.MaxWidth, lim.MaxHeight), min(lim.MaxWidth, lim.MaxHeight)
	if long > int64(limLong) || short > int64(limShort) {
		return Info{}, &InvalidError{Reason: fmt.Sprintf("resolution %dx%d exceeds the limit of %dx%d (either orientation)",
			w, h, lim.MaxWidth, lim.MaxHeight)}
	}
	// Phones store portrait video as landscape plus a rotation that players
	// (and ffmpeg when sampling) apply; report what is displayed.
	if rotated(video) {
		w, h = h, w
	}
	info.Width, info.Height = int(w), int(h)

	if fps, ok := parseRate(video.AvgFrameRate); ok {
		info.FPS = fps
	} else if fps, ok := parseRate(video.RFrameRate); ok {
		info.FPS = fps
	} // else 0: unknown, which nothing downstream depends on

	if br, ok := p.Format.BitRate.int(); ok && br > 0 {
		info.BitRate = br
	}

	if truncated, have, want := isTruncated(format, video, p.Format.Size); truncated {
		return Info{}, &InvalidError{Reason: fmt.Sprintf("file is truncated: %d bytes present, the video alone needs about %d", have, want)}
	}
	return info, nil
}

// isImage reports whether the "video" is a still picture: an image demuxer,
// a still-image stream, or one frame (or no duration) of an image codec.
func isImage(format string, v *probeStream, formatDuration flex) bool {
	if strings.Contains(format, "_pipe") || strings.Contains(format, "image2") {
		return true
	}
	if n, _ := v.Disposition.StillImage.int(); n != 0 {
		return true
	}
	if !imageCodecs[v.CodecName] {
		return false
	}
	if n, ok := v.NbFrames.int(); ok && n <= 1 {
		return true
	}
	_, hasFmtDur := formatDuration.float()
	_, hasStreamDur := v.Duration.float()
	return !hasFmtDur && !hasStreamDur
}

// isTruncated catches MP4/MOV files cut short after their index (moov at the
// front, "faststart"): ffprobe reads the index happily, but the samples it
// lists are not in the file. For MOV ffprobe derives the stream bit_rate from
// the sample sizes over nb_frames/avg_frame_rate, so that product is the
// video payload size, which an intact file always holds. Files cut before the
// index already fail in ffprobe ("moov atom not found").
func isTruncated(format string, v *probeStream, size flex) (bool, int64, int64) {
	if !strings.Contains(format, "mov") && !strings.Contains(format, "mp4") {
		return false, 0, 0
	}
	have, ok := size.int()
	if !ok || have <= 0 {
		return false, 0, 0
	}
	br, ok := v.BitRate.float()
	if !ok || br <= 0 {
		return false, 0, 0
	}
	var dur float64
	if n, ok := v.NbFrames.float(); ok && n > 0 {
		if fps, ok := parseRate(v.AvgFrameRate); ok {
			dur = n / fps
		}
	}
	if dur <= 0 {
		if d, ok := v.Duration.float(); ok && d > 0 {
			dur = d
		}
	}
	want := br * dur / 8
	if dur <= 0 || math.IsInf(want, 0) || want > 1<<62 {
		return false, 0, 0
	}
	// 5% and 64 KiB of slack for rounding and edit lists.
	if want > float64(have)*1.05+64<<10 {
		return true, have, int64(want)
	}
	return false, 0, 0
}

// rotated reports a ±90° display rotation.
func rotated(v *probeStream) bool {
	deg, ok := v.Tags.Rotate.float()
	for _, sd := range v.SideData {
		if r, ok2 := sd.Rotation.float(); ok2 {
			deg, ok = r, true
		}
	}
	if !ok {
		return false
	}
	q := math.Mod(math.Abs(math.Round(deg)), 180)
	return q == 90
}

// parseRate parses an ffprobe rational like "30000/1001" (or a plain number)
// into a plausible frame rate.
func parseRate(s string) (float64, bool) {
	num, den, found := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, false
	}
	d := 1.0
	if found {
		if d, err = strconv.ParseFloat(den, 64); err != nil {
			return 0, false
		}
	}
	if d == 0 {
		return 0, false
	}
	fps := n / d
	// Above 1000 fps it is a timebase ("90000/1"), not a frame rate.
	if math.IsNaN(fps) || fps <= 0 || fps > 1000 {
		return 0, false
	}
	return fps, true
}

func fmtSeconds(sec float64) string {
	if sec >= float64(math.MaxInt64/int64(time.Second)) {
		return strconv.FormatFloat(sec, 'f', 0, 64) + "s"
	}
	return time.Duration(sec * float64(time.Second)).Round(time.Millisecond).String()
}

// capWriter keeps the first max bytes written and silently drops the rest, so
// a runaway child cannot exhaust memory.
type capWriter struct {
	buf bytes.Buffer
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *capWriter) Bytes() []byte  { return w.buf.Bytes() }
func (w *capWriter) String() string { return w.buf.String() }
