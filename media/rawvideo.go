package media

// The raw video pipeline: ffmpeg decodes to yuv420p frames on a pipe, Go
// transforms them (in parallel, order kept), ffmpeg encodes H.264 from a
// pipe. Used by the watermark pass and, decode-only, by detection. A pass
// whose transform is the same luma offsets on every frame runs in one
// ffmpeg process instead (offsets.go).
//
// Frames travel as YUV4MPEG2 (y4m): a one-line header carries the size, rate
// and aspect after ffmpeg applied the display rotation, and every frame is
// "FRAME\n" plus the planes, so nothing has to be guessed from ffprobe.
//
// Variable frame rate: the decoder runs the fps filter at the source's
// average rate, so the output is constant-rate. A VFR source therefore gets
// frames duplicated or dropped where its spacing deviates from the average;
// its length and A/V sync are kept, its exact frame timing is not. A CFR
// source comes out frame for frame. Counting frames on a constant-rate grid
// is also what makes segments cut at exact frames and resumable.
//
// Resume: the encode is split into segments of SegmentSeconds. Each segment
// is a separate x264 run writing its own MP4, reported to the caller as soon
// as it is complete (the watermark activity stores it in blob storage)
// with the fingerprint of the frame after it (Segment.Next). A retried pass
// on a constant-rate source seeks to the first unfinished segment and keeps
// the seek only if its first frame has that fingerprint; otherwise it
// starts the decoder at the segment's frame by trim=start_frame (exact,
// independent of keyframes, at the cost of decoding and discarding the
// frames before it). MuxSegments joins all segments
// with the concat demuxer (-c copy) and copies the source's audio. Every
// segment starts with an IDR frame, which costs a few KB per segment. A
// video that fits one segment is a Whole pass instead: its one encoder run
// takes the audio too and writes the finished MP4, with no mux run.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// VideoStream is what the raw pipeline needs to know about a source.
type VideoStream struct {
	Width       int     `json:"width"`  // coded size, before any rotation
	Height      int     `json:"height"` //
	Rate        string  `json:"rate"`   // the constant output rate, an ffmpeg rational like "30000/1001"
	FPS         float64 `json:"fps"`    // Rate as a number
	SAR         string  `json:"sar"`    // sample aspect ratio "N:D" when not square, else ""
	DurationSec float64 `json:"duration_sec"`
	HasAudio    bool    `json:"has_audio"`
	AudioCodec  string  `json:"audio_codec,omitempty"`
	Still       bool    `json:"still"` // an image: decoded as its one frame, whatever the rate says
	// ConstantRate: the stream's declared rate (r_frame_rate) is its
	// average rate, within 1%. Only such a source is resumed by an input
	// seek (TranscodeOptions.StartSum).
	ConstantRate bool `json:"constant_rate,omitempty"`
	// Rotated: a ±90° display rotation, which the decoder applies.
	Rotated bool `json:"rotated,omitempty"`
	// Colour is the source's colour description, which the rendition
	// keeps: the y4m pipe does not carry it, and players guess the matrix
	// of an untagged stream (often BT.601 below 720p).
	Colour Colour `json:"colour,omitzero"`
}

// Colour is a stream's colour description in ffmpeg's names; "" is
// untagged. Only names ffmpeg's encoder options accept are kept.
type Colour struct {
	Matrix    string `json:"matrix,omitempty"`    // -colorspace
	Primaries string `json:"primaries,omitempty"` // -color_primaries
	Transfer  string `json:"transfer,omitempty"`  // -color_trc
}

// colourNames are the tags a rendition keeps; others (rare, or spelled
// differently by ffprobe and the encoder's options) are dropped.
var colourNames = struct{ matrix, primaries, transfer map[string]bool }{
	matrix: setOf("bt709", "bt470bg", "smpte170m", "smpte240m", "fcc", "bt2020nc", "bt2020c", "ycgco"),
	primaries: setOf("bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "film", "bt2020",
		"smpte428", "smpte431", "smpte432"),
	transfer: setOf("bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "linear",
		"iec61966-2-1", "iec61966-2-4", "bt2020-10", "bt2020-12", "smpte2084", "arib-std-b67"),
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func colourOf(s *probeStream) Colour {
	keep := func(set map[string]bool, name string) string {
		if set[name] {
			return name
		}
		return ""
	}
	return Colour{Matrix: keep(colourNames.matrix, s.ColorSpace),
		Primaries: keep(colourNames.primaries, s.ColorPrimaries),
		Transfer:  keep(colourNames.transfer, s.ColorTransfer)}
}

// colourArgs tag a rendition encoded from vs's decoded frames: limited
// range (the decoder converts full-range sources) and vs's description.
func (vs VideoStream) colourArgs() []string {
	args := []string{"-color_range", "tv"}
	for _, t := range []struct{ opt, name string }{
		{"-colorspace", vs.Colour.Matrix}, {"-color_primaries", vs.Colour.Primaries}, {"-color_trc", vs.Colour.Transfer},
	} {
		if t.name != "" {
			args = append(args, t.opt, t.name)
		}
	}
	return args
}

// DecodedSize is the size of the frames the raw pipeline decodes from vs:
// its display size (rotation applied), cut to even dimensions.
func (vs VideoStream) DecodedSize() (w, h int) {
	w, h = vs.Width, vs.Height
	if vs.Rotated {
		w, h = h, w
	}
	return w &^ 1, h &^ 1
}

// maxRawFPS bounds the constant output rate; past it a stream's rate is a
// timebase rather than a frame rate.
const maxRawFPS = 240

// fallbackRate is used when ffprobe gives no plausible rate (e.g. a still image).
const fallbackRate = "25/1"

type rawProbeJSON struct {
	Streams []struct {
		probeStream
		SAR string `json:"sample_aspect_ratio"`
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   flex   `json:"duration"`
	} `json:"format"`
}

// ProbeStream asks ffprobe for the first video stream (not cover art) of
// path and whether there is audio. Input that is not media, or has no video
// stream, yields an *InvalidError; images are accepted (one frame).
func ProbeStream(ctx context.Context, path string) (VideoStream, error) {
	input := "file:" + path
	cmd := exec.CommandContext(ctx, "ffprobe", "-hide_banner", "-v", "error",
		"-protocol_whitelist", "file", "-print_format", "json",
		"-show_entries", "stream=codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate,sample_aspect_ratio,nb_frames,duration,color_space,color_primaries,color_transfer:stream_disposition=attached_pic,still_image:stream_tags=rotate:stream_side_data=rotation:format=duration,format_name",
		input)
	stdout := &capWriter{max: maxProbeJSON + 1}
	stderr := &capWriter{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return VideoStream{}, fmt.Errorf("probe %s: %w", path, ctx.Err())
		}
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || !exitErr.Exited() || isSystemFailure(stderr.String()) {
			return VideoStream{}, fmt.Errorf("probe %s: ffprobe: %w: %s", path, err, firstLine(stderr.String(), input))
		}
		msg := firstLine(stderr.String(), input)
		if msg == "" {
			msg = "ffprobe " + err.Error()
		}
		return VideoStream{}, &InvalidError{Reason: "not a readable image or video: " + msg}
	}
	return parseRawProbe(stdout.Bytes())
}

func parseRawProbe(data []byte) (VideoStream, error) {
	if len(data) > maxProbeJSON {
		return VideoStream{}, &InvalidError{Reason: "probe output too large (too many streams)"}
	}
	var p rawProbeJSON
	if err := json.Unmarshal(data, &p); err != nil {
		return VideoStream{}, &InvalidError{Reason: "unreadable probe output: " + err.Error()}
	}
	var vs VideoStream
	found := false
	for _, s := range p.Streams {
		switch s.CodecType {
		case "video":
			if n, _ := s.Disposition.AttachedPic.int(); n != 0 || found {
				continue
			}
			w, _ := s.Width.int()
			h, _ := s.Height.int()
			if w <= 0 || h <= 0 {
				continue
			}
			found = true
			vs.Width, vs.Height = int(w), int(h)
			vs.Rotated = rotated(&s.probeStream)
			vs.Colour = colourOf(&s.probeStream)
			vs.Rate, vs.FPS = chooseRate(s.RFrameRate, s.AvgFrameRate)
			vs.ConstantRate = vs.Rate == s.RFrameRate && ratesAgree(s.RFrameRate, s.AvgFrameRate)
			vs.Still = isImage(p.Format.FormatName, &s.probeStream, p.Format.Duration)
			if sar := s.SAR; sar != "" && sar != "1:1" && sar != "0:1" && sar != "N/A" {
				if n, d, ok := strings.Cut(sar, ":"); ok && positiveInt(n) && positiveInt(d) {
					vs.SAR = sar
				}
			}
		case "audio":
			if !vs.HasAudio {
				vs.HasAudio, vs.AudioCodec = true, s.CodecName
			}
		}
	}
	if !found {
		return VideoStream{}, &InvalidError{Reason: "no video stream or image"}
	}
	if d, ok := p.Format.Duration.float(); ok && d > 0 {
		vs.DurationSec = d
	}
	return vs, nil
}

func positiveInt(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0
}

// chooseRate picks the constant output rate: the average rate (what a VFR
// stream really plays at), but the exact r_frame_rate when the two agree
// within 1%, so that 30000/1001 stays exact rather than a rounded average.
func chooseRate(r, avg string) (string, float64) {
	rf, rok := parseRate(r)
	af, aok := parseRate(avg)
	rok = rok && rf <= maxRawFPS && isRational(r)
	aok = aok && af <= maxRawFPS && isRational(avg)
	switch {
	case rok && aok && ratesAgree(r, avg):
		return r, rf
	case aok:
		return avg, af
	case rok:
		return r, rf
	}
	f, _ := parseRate(fallbackRate)
	return fallbackRate, f
}

// ratesAgree: both rates parse and are within 1% of each other.
func ratesAgree(r, avg string) bool {
	rf, rok := parseRate(r)
	af, aok := parseRate(avg)
	return rok && aok && math.Abs(rf-af) <= 0.01*af
}

// isRational accepts "n/d" or "n" with positive integers only: the string
// goes into a filter graph.
func isRational(s string) bool {
	n, d, found := strings.Cut(s, "/")
	return positiveInt(n) && (!found || positiveInt(d))
}

// RawFrame is one decoded yuv420p frame: three tightly packed planes (Y is
// Width bytes per row, U and V Width/2). Width and Height are even.
type RawFrame struct {
	Index  int // position in the constant-rate sequence, from 0
	Width  int
	Height int
	Y      []byte
	U      []byte
	V      []byte
}

// y4mHeader is the parsed stream header of a yuv4mpegpipe.
type y4mHeader struct {
	line          []byte // the whole line, newline included
	width, height int
}

func (h y4mHeader) frameSize() int { return h.width*h.height + 2*(h.width/2)*(h.height/2) }

// maxRawPixels bounds a frame the pipeline accepts (8K).
const maxRawPixels = 7680 * 4320

func readY4MHeader(r *bufio.Reader) (y4mHeader, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return y4mHeader{}, io.EOF
		}
		return y4mHeader{}, fmt.Errorf("y4m header: %w", noEOF(err))
	}
	h := y4mHeader{line: bytes.Clone(line)}
	fields := strings.Fields(string(line))
	if len(fields) == 0 || fields[0] != "YUV4MPEG2" {
		return h, fmt.Errorf("y4m header: not a YUV4MPEG2 stream")
	}
	for _, f := range fields[1:] {
		switch f[0] {
		case 'W':
			h.width, _ = strconv.Atoi(f[1:])
		case 'H':
			h.height, _ = strconv.Atoi(f[1:])
		case 'C':
			if !strings.HasPrefix(f, "C420") {
				return h, fmt.Errorf("y4m header: colour space %s, want 4:2:0", f)
			}
		}
	}
	if h.width <= 0 || h.height <= 0 || h.width%2 != 0 || h.height%2 != 0 || h.width*h.height > maxRawPixels {
		return h, fmt.Errorf("y4m header: unusable frame size %dx%d", h.width, h.height)
	}
	return h, nil
}

// readY4MFrame reads the next frame into buf (len frameSize); io.EOF at a
// clean end of stream.
func readY4MFrame(r *bufio.Reader, buf []byte) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return io.EOF
		}
		return fmt.Errorf("y4m frame header: %w", noEOF(err))
	}
	if !bytes.HasPrefix(line, []byte("FRAME")) {
		return fmt.Errorf("y4m: want FRAME, got %q", truncateBytes(line, 16))
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("y4m frame: %w", noEOF(err))
	}
	return nil
}

func truncateBytes(b []byte, n int) []byte { return b[:min(len(b), n)] }

func frameOf(h y4mHeader, index int, buf []byte) RawFrame {
	ys := h.width * h.height
	cs := (h.width / 2) * (h.height / 2)
	return RawFrame{Index: index, Width: h.width, Height: h.height,
		Y: buf[:ys:ys], U: buf[ys : ys+cs : ys+cs], V: buf[ys+cs : ys+2*cs : ys+2*cs]}
}

// ffmpegProc is a running ffmpeg child bound to a context and to our
// lifetime (Pdeathsig), with the tail of its stderr kept for errors.
type ffmpegProc struct {
	cmd    *exec.Cmd
	stderr *tailWriter
	stdin  io.WriteCloser
	stdout io.ReadCloser
}

func startFFmpeg(ctx context.Context, args []string, withStdin, withStdout bool) (*ffmpegProc, error) {
	full := append([]string{"-hide_banner", "-nostats", "-loglevel", "error", "-y"}, args...)
	if !withStdin {
		full = append([]string{"-nostdin"}, full...)
	}
	cmd := exec.CommandContext(ctx, "ffmpeg", full...)
	// A worker killed with SIGKILL must not leave ffmpeg running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &ffmpegProc{cmd: cmd, stderr: &tailWriter{max: 8 << 10}}
	cmd.Stderr = p.stderr
	cmd.WaitDelay = 5 * time.Second
	// Our own pipes (os.File, handed to the child as they are) so that
	// their kernel buffer can be enlarged; the child's ends are closed here
	// once it started, ours in wait (stdout) or by the caller (stdin).
	var childEnds []*os.File
	closeAll := func() {
		for _, f := range append(childEnds, fileOf(p.stdin), fileOf(p.stdout)) {
			if f != nil {
				f.Close()
			}
		}
	}
	if withStdin {
		r, w, err := rawPipe()
		if err != nil {
			return nil, err
		}
		cmd.Stdin, p.stdin = r, w
		childEnds = append(childEnds, r)
	}
	if withStdout {
		r, w, err := rawPipe()
		if err != nil {
			closeAll()
			return nil, err
		}
		cmd.Stdout, p.stdout = w, r
		childEnds = append(childEnds, w)
	}
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("start ffmpeg: %w", err)
	}
	for _, f := range childEnds {
		f.Close()
	}
	return p, nil
}

func fileOf(c io.Closer) *os.File {
	f, _ := c.(*os.File)
	return f
}

// rawPipeSize is the kernel buffer of a raw frame pipe (the default is
// 64 KiB, an eighth of a 432p frame): fewer wake-ups per frame between
// ffmpeg and us. Linux caps it at /proc/sys/fs/pipe-max-size (1 MiB by
// default); a smaller cap only costs speed.
const rawPipeSize = 1 << 20

func rawPipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	if rc, err := w.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, rawPipeSize)
		})
	}
	return r, w, nil
}

// rawBufSize is the bufio size on the raw pipes: smaller than a frame, so
// that bufio reads and writes most of a frame directly instead of copying
// it through its buffer.
const rawBufSize = 64 << 10

// wait waits for ffmpeg and explains a failure with its stderr.
func (p *ffmpegProc) wait() error {
	err := p.cmd.Wait()
	if p.stdout != nil { // like exec's StdoutPipe: closed once the child is gone
		p.stdout.Close()
	}
	if err != nil {
		return fmt.Errorf("ffmpeg: %w: %s", err, p.stderr.tail())
	}
	return nil
}

// decodeSpec says how the decoder samples the source.
type decodeSpec struct {
	rate       string  // constant output rate
	startFrame int     // drop the frames before this one (exact, after the fps filter)
	seek       float64 // start decoding at about this time (input seek; 0: the start)
	seekKey    bool    // start at the keyframe the seek finds, not at seek itself
	maxWidth   int     // downscale to fit (0: full size)
	maxHeight  int
	maxSeconds float64 // stop after this much video (0: all)
	maxFrames  int     // stop after this many frames (0: all)
	keyframes  bool    // decode keyframes only
	keySpacing float64 // keep keyframes at least this many seconds apart (0: all)
}

// startDecoder runs ffmpeg decoding path's first video stream to y4m yuv420p
// on its stdout.
func startDecoder(ctx context.Context, path string, d decodeSpec) (*ffmpegProc, error) {
	args := []string{"-protocol_whitelist", "file"}
	if d.keyframes { // the decoder skips every other frame: a fast look over a whole video
		args = append(args, "-skip_frame", "nokey")
	}
	if d.seek > 0 && d.seekKey {
		args = append(args, "-noaccurate_seek")
	}
	if d.seek > 0 {
		args = append(args, "-ss", strconv.FormatFloat(d.seek, 'f', 3, 64))
	}
	if d.maxSeconds > 0 {
		args = append(args, "-t", strconv.FormatFloat(d.maxSeconds, 'f', 3, 64))
	}
	args = append(args, "-i", "file:"+path,
		"-map", "0:V:0", "-an", "-sn", "-dn",
		"-vf", d.filter(),
		// The fps filter already made the rate constant; the muxer must not
		// pad a trimmed start with duplicates.
		"-fps_mode", "passthrough",
		"-pix_fmt", "yuv420p")
	if d.maxFrames > 0 {
		args = append(args, "-frames:v", strconv.Itoa(d.maxFrames))
	}
	args = append(args, "-f", "yuv4mpegpipe", "pipe:1")
	return startFFmpeg(ctx, args, false, true)
}

// filter is the decoder's filter chain: fps first (constant rate), then
// scale, then even dimensions for 4:2:0, then the trim to startFrame.
func (d decodeSpec) filter() string {
	// A still image has no rate: the fps filter could drop its one frame.
	vf := "null"
	if d.rate != "" {
		vf = "fps=" + d.rate
	}
	if d.keyframes && d.keySpacing > 0 {
		vf = fmt.Sprintf("select='isnan(prev_selected_t)+gte(t-prev_selected_t,%.3f)'", d.keySpacing)
	}
	if d.maxWidth > 0 && d.maxHeight > 0 {
		vf += fmt.Sprintf(",scale=w='min(iw,%d)':h='min(ih,%d)':force_original_aspect_ratio=decrease:flags=bilinear", d.maxWidth, d.maxHeight)
	}
	vf += ",crop=w=trunc(iw/2)*2:h=trunc(ih/2)*2"
	if d.startFrame > 0 {
		vf += fmt.Sprintf(",trim=start_frame=%d", d.startFrame)
	}
	return vf
}

// DecodeOptions bound a decode-only pass (detection).
type DecodeOptions struct {
	MaxWidth   int     // frames larger than MaxWidth x MaxHeight are scaled down to fit, aspect kept (0: full size)
	MaxHeight  int     //
	MaxSeconds float64 // only the first MaxSeconds of the video (0: all)
	MaxFrames  int     // at most this many frames (0: all)
	MaxFPS     int     // sources faster than this are decoded at this rate (0: the source's rate)
	StartFrame int     // drop the frames before this one (exact); indices still count from 0 at it
	// Keyframes decodes only the source's keyframes, at least KeySpacing
	// seconds apart: a cheap sample of a whole video.
	Keyframes  bool
	KeySpacing float64
	Stream     *VideoStream // the source as already probed (nil: Decode probes it)
}

// Decode decodes path (a video or an image) to yuv420p frames at the
// source's constant rate and calls fn with each, in order. The frame's
// buffers are reused after fn returns. An error from fn stops ffmpeg and is
// returned. Input that is not media yields an *InvalidError.
func Decode(ctx context.Context, path string, opt DecodeOptions, fn func(RawFrame) error) (VideoStream, error) {
	var vs VideoStream
	if opt.StartFrame < 0 {
		return vs, fmt.Errorf("decode %s: start frame %d", path, opt.StartFrame)
	}
	if opt.Stream != nil {
		vs = *opt.Stream
	} else {
		var err error
		if vs, err = ProbeStream(ctx, path); err != nil {
			return vs, err
		}
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rate := vs.Rate
	if opt.MaxFPS > 0 && vs.FPS > float64(opt.MaxFPS) {
		rate = strconv.Itoa(opt.MaxFPS)
	}
	if vs.Still || opt.Keyframes {
		rate = ""
	}
	dec, err := startDecoder(ctx, path, decodeSpec{rate: rate, maxWidth: opt.MaxWidth, maxHeight: opt.MaxHeight,
		maxSeconds: opt.MaxSeconds, maxFrames: opt.MaxFrames, keyframes: opt.Keyframes, keySpacing: opt.KeySpacing, startFrame: opt.StartFrame})
	if err != nil {
		return vs, err
	}
	n, loopErr := func() (int, error) {
		br := bufio.NewReaderSize(dec.stdout, rawBufSize)
		h, err := readY4MHeader(br)
		if err == io.EOF {
			return 0, nil
		}
		if err != nil {
			return 0, &ffmpegOutputError{err}
		}
		buf := make([]byte, h.frameSize())
		for i := 0; ; i++ {
			if err := readY4MFrame(br, buf); err == io.EOF {
				return i, nil
			} else if err != nil {
				return i, &ffmpegOutputError{err}
			}
			if err := fn(frameOf(h, i, buf)); err != nil {
				return i, err
			}
		}
	}()
	if loopErr != nil {
		cancel()
	}
	waitErr := dec.wait()
	switch {
	case loopErr != nil && !isFFmpegOutputErr(loopErr):
		return vs, loopErr // from fn
	case parent.Err() != nil:
		return vs, parent.Err()
	case waitErr != nil:
		return vs, decodeFailure(path, waitErr)
	case loopErr != nil:
		return vs, fmt.Errorf("decode %s: %w", path, loopErr)
	case n == 0:
		return vs, &InvalidError{Reason: "no frame could be decoded"}
	}
	return vs, nil
}

// ffmpegOutputError marks a malformed y4m stream (as opposed to an error
// returned by a caller's function).
type ffmpegOutputError struct{ err error }

func (e *ffmpegOutputError) Error() string { return e.err.Error() }
func (e *ffmpegOutputError) Unwrap() error { return e.err }

func isFFmpegOutputErr(err error) bool {
	var e *ffmpegOutputError
	return errors.As(err, &e)
}

// decodeFailure classifies a decoder exit: exit code 69 (too many decode
// errors) or a readable-but-broken stream is invalid input.
func decodeFailure(path string, err error) error {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() && exitErr.ExitCode() == ffmpegExitTooManyErrors {
		return fmt.Errorf("%w (%v)", &InvalidError{Reason: "the video stream is corrupt: most frames failed to decode"}, err)
	}
	return fmt.Errorf("decode %s: %w", path, err)
}

// EncodeOptions set the H.264 encode of renditions.
type EncodeOptions struct {
	CRF    int    `json:"crf"`    // x264 constant rate factor, 1-51 (0: the default, 23)
	Preset string `json:"preset"` // x264 preset (default "medium")
}

// DefaultEncode is x264's own default quality and speed.
var DefaultEncode = EncodeOptions{CRF: 23, Preset: "medium"}

// x264Presets are the presets x264 knows.
var x264Presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"}

// WithDefaults fills zero fields from DefaultEncode.
func (o EncodeOptions) WithDefaults() EncodeOptions {
	if o.CRF == 0 {
		o.CRF = DefaultEncode.CRF
	}
	if o.Preset == "" {
		o.Preset = DefaultEncode.Preset
	}
	return o
}

// x264Args are the output arguments of a rendition's video encode.
func (o EncodeOptions) x264Args() []string {
	return []string{"-c:v", "libx264", "-preset", o.Preset, "-crf", strconv.Itoa(o.CRF), "-pix_fmt", "yuv420p"}
}

// Validate rejects a CRF outside 1-51 or an unknown preset. CRF 0 would
// be lossless, tens of times the bits, never what a served rendition
// wants; and 0 is the zero value, which WithDefaults reads as unset.
func (o EncodeOptions) Validate() error {
	if o.CRF < 1 || o.CRF > 51 {
		return fmt.Errorf("CRF %d: want 1-51", o.CRF)
	}
	for _, p := range x264Presets {
		if o.Preset == p {
			return nil
		}
	}
	return fmt.Errorf("preset %q: want one of %s", o.Preset, strings.Join(x264Presets, ", "))
}

// Segment is one finished piece of a segmented encode.
type Segment struct {
	Index      int    `json:"index"`
	FirstFrame int    `json:"first_frame"`
	Frames     int    `json:"frames"`
	Path       string `json:"-"` // the MP4 in WorkDir
	// Next is the FrameSum of the source frame right after the segment, as
	// decoded (before the transform), or "" after the last one: a retry
	// that starts at the next segment checks its input seek against it
	// (TranscodeOptions.StartSum).
	Next string `json:"next,omitempty"`
}

// FrameSum fingerprints a decoded yuv420p frame (its three planes, tightly
// packed): 16 hex digits of SHA-256.
func FrameSum(planes []byte) string {
	h := sha256.Sum256(planes)
	return hex.EncodeToString(h[:8])
}

// TranscodeOptions configure EncodeSegments.
type TranscodeOptions struct {
	Encode EncodeOptions
	// SegmentSeconds, when set, is the length of one resumable segment.
	// Zero sizes segments by work (see SegmentFrames).
	SegmentSeconds float64
	// Stream is the source as ProbeStream saw it, when the caller probed
	// already (saves an ffprobe run); nil: EncodeSegments probes.
	Stream *VideoStream
	// Workers transform frames in parallel (default GOMAXPROCS).
	Workers int
	// WorkDir receives the segment files seg-NNNNNN.mp4 (required).
	WorkDir string
	// StartSegment: segments before it are finished already; decoding starts
	// at its first frame.
	StartSegment int
	// StartSum, when StartSegment > 0, is the Next of the segment before
	// it. On a constant-rate source the decoder then seeks to the segment
	// instead of decoding and dropping every frame before it, and keeps the
	// seek only if the first frame it yields has this FrameSum; otherwise,
	// or without StartSum, it decodes from the start (TranscodeResult.Seeked
	// tells which).
	StartSum string
	// OnSegment is called, in order, when a segment's file is complete. It
	// runs while the next segment encodes; an error stops the pass.
	OnSegment func(Segment) error
	// Progress is called after every frame is handed to the encoder with the
	// number of frames done, counting those of finished segments.
	Progress func(frames int)
	// SeekSeconds and MaxFrames make the pass a sample of the video, not
	// part of a rendition: decoding starts at about SeekSeconds (ffmpeg's
	// input seek, which skips decoding what comes before; frame indices
	// count from there) and stops after MaxFrames frames (0: the end). Both
	// need StartSegment 0 and not Whole.
	SeekSeconds float64
	MaxFrames   int
	// SeekKeyframe, on a sample, starts it at the keyframe at or before
	// SeekSeconds instead of decoding and dropping the frames from there
	// to SeekSeconds: where keyframes are sparse (one at 0 in a 10-s clip)
	// that pre-roll was most of a sample's decode.
	SeekKeyframe bool
	// EncodeCenter, on a sample, encodes only the central quarter of every
	// frame (half its width and height, on the 16-px macroblock grid; the
	// whole frame still goes through the transform): a quarter of the
	// encoding work to probe what the frames cost.
	EncodeCenter bool
	// LumaOffsets, when set, is a luma plane of the decoded frame size
	// (VideoStream.DecodedSize): 128 plus an offset that every frame's
	// pixel gets, saturating, as watermark.VideoMarker.Offsets gives for a
	// mark that is the same in every frame. The pass then runs as one
	// ffmpeg process (decode, add, encode) and no frame crosses a pipe: on
	// flat video that relay is most of what a pass costs over a plain
	// transcode (README, "Fourteenth round"). Should that process fail (a
	// size the probe did not foresee, a stream that changes size), the
	// pass goes on from its first unfinished segment through the pipe and
	// transform, which must add the same offsets. Not for samples.
	LumaOffsets []byte
	// OffsetBlocks is LumaOffsets for a mark that changes from one block of
	// frames to the next (the block grid's motion gate): the same one
	// process, fed the planes as a second input, and the same fallback to
	// the pipe. Not with LumaOffsets.
	OffsetBlocks *OffsetBlocks
	// Whole encodes the pass as one segment that is the finished rendition:
	// the source's audio muxed in, +faststart, never cut (StartSegment must
	// be 0). For videos that fit one segment (FitsOneSegment), where a retry
	// starts over anyway, it saves the MuxSegments run.
	Whole bool
}

// OffsetBlocks are the luma offsets of a pass, block by block.
type OffsetBlocks struct {
	// Frames per block. Blocks start at its multiples, counted from the
	// video's first frame, whatever segment a pass starts at.
	Frames int
	// Plane is block's plane, as LumaOffsets (the slice is not changed);
	// io.EOF past the video's last block. A pass asks for blocks in order
	// from the one holding its first frame.
	Plane func(ctx context.Context, block int) ([]byte, error)
}

// FitsOneSegment reports whether vs, by its probed duration, fits one
// segment of segFrames frames. A wrong duration costs only resumability:
// a Whole pass is never cut.
func FitsOneSegment(vs VideoStream, segFrames int) bool {
	return vs.Still || (vs.DurationSec > 0 && vs.DurationSec*vs.FPS <= float64(segFrames))
}

// DefaultSegmentSeconds is the shortest default segment.
const DefaultSegmentSeconds = 20

// defaultSegmentPixels is the least work in a default segment: 20 s of
// 720p30, in pixels. A segment costs an encoder start, a lookahead flush
// and an IDR frame, which pays off only for enough work; what a retry
// redoes stays bounded by this much (or by 20 s of larger video).
const defaultSegmentPixels = DefaultSegmentSeconds * 30 * 1280 * 720

// SegmentFrames is how many frames a segment of vs holds: segmentSeconds of
// video when set; else DefaultSegmentSeconds, or more frames when they are
// small, so that a segment holds at least defaultSegmentPixels of work (a
// short low-resolution clip is one segment).
func SegmentFrames(vs VideoStream, segmentSeconds float64) int {
	if segmentSeconds > 0 {
		return max(1, int(math.Round(segmentSeconds*vs.FPS)))
	}
	frames := int(math.Round(DefaultSegmentSeconds * vs.FPS))
	if px := vs.Width * vs.Height; px > 0 {
		frames = max(frames, (defaultSegmentPixels+px-1)/px)
	}
	return max(1, frames)
}

// TranscodeResult sums up EncodeSegments.
type TranscodeResult struct {
	Stream        VideoStream `json:"stream"`
	SegmentFrames int         `json:"segment_frames"`
	Segments      []Segment   `json:"segments"`         // encoded by this call
	Frames        int         `json:"frames"`           // total, counting the segments before StartSegment
	Seeked        bool        `json:"seeked,omitempty"` // StartSegment was reached by an input seek
}

// SegmentPath is where EncodeSegments writes segment i in dir.
func SegmentPath(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("seg-%06d.mp4", i)) }

// EncodeSegments decodes src from segment opt.StartSegment on, passes every
// frame to transform (which may change the planes in place; it runs on
// opt.Workers goroutines at once, so it must be safe for concurrent use) and
// encodes the frames, in order, into H.264 segment files. Memory is bounded
// by a few frames per worker whatever the video's length. Cancelling ctx
// kills both ffmpeg processes. A source that yields no frame at all (from
// segment 0) is an *InvalidError.
func EncodeSegments(ctx context.Context, src string, opt TranscodeOptions, transform func(RawFrame) error) (TranscodeResult, error) {
	enc := opt.Encode.WithDefaults()
	if err := enc.Validate(); err != nil {
		return TranscodeResult{}, err
	}
	if opt.WorkDir == "" {
		return TranscodeResult{}, errors.New("encode segments: no work directory")
	}
	if opt.StartSegment < 0 || (opt.Whole && opt.StartSegment != 0) {
		return TranscodeResult{}, fmt.Errorf("encode segments: start segment %d (whole: %t)", opt.StartSegment, opt.Whole)
	}
	if opt.SeekSeconds < 0 || opt.MaxFrames < 0 || (opt.SeekSeconds > 0 || opt.MaxFrames > 0) && (opt.StartSegment != 0 || opt.Whole) {
		return TranscodeResult{}, fmt.Errorf("encode segments: a sample (seek %g s, %d frames) starts at segment 0 and is not whole", opt.SeekSeconds, opt.MaxFrames)
	}
	if opt.EncodeCenter && opt.MaxFrames == 0 {
		return TranscodeResult{}, errors.New("encode segments: only a sample (MaxFrames) may encode the frames' centre alone")
	}
	if opt.SeekKeyframe && opt.MaxFrames == 0 {
		return TranscodeResult{}, errors.New("encode segments: only a sample (MaxFrames) may start at a keyframe")
	}
	offsets := opt.LumaOffsets != nil || opt.OffsetBlocks != nil
	if offsets && (opt.MaxFrames > 0 || opt.SeekSeconds > 0 || opt.EncodeCenter) {
		return TranscodeResult{}, errors.New("encode segments: luma offsets are for whole passes, not samples")
	}
	if opt.OffsetBlocks != nil && (opt.LumaOffsets != nil || opt.OffsetBlocks.Frames < 1 || opt.OffsetBlocks.Plane == nil) {
		return TranscodeResult{}, errors.New("encode segments: offset blocks need a block length and planes, and no luma offsets")
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var vs VideoStream
	var err error
	if opt.Stream != nil {
		vs = *opt.Stream
	} else if vs, err = ProbeStream(ctx, src); err != nil {
		return TranscodeResult{}, err
	}
	if offsets && !vs.Still && vs.Rate != "" {
		var done TranscodeResult
		err := errSeekMissed
		if seek, ok := resumeSeek(opt, vs); ok {
			done, err = encodeOffsets(ctx, src, opt, vs, enc, seek)
		}
		if errors.Is(err, errSeekMissed) {
			done, err = encodeOffsets(ctx, src, opt, vs, enc, 0)
		}
		if !errors.Is(err, errOffsetsFailed) {
			return done, err
		}
		// Segments already reported stand: their frames are what the pipe
		// would have made. The pipe takes over from the next one.
		if n := len(done.Segments); n > 0 {
			opt.StartSegment += n
			opt.StartSum = done.Segments[n-1].Next
		}
		res, err := EncodeSegments(ctx, src, withoutOffsets(opt), transform)
		res.Segments = append(done.Segments, res.Segments...)
		return res, err
	}
	if seek, ok := resumeSeek(opt, vs); ok {
		res, err := encodeFrom(ctx, src, opt, vs, enc, workers, transform, seek)
		if !errors.Is(err, errSeekMissed) {
			return res, err
		}
	}
	return encodeFrom(ctx, src, opt, vs, enc, workers, transform, 0)
}

// resumeSeek is where a resume's input seek goes, if it may seek: a
// constant-rate source and a StartSum to check the seek against.
func resumeSeek(opt TranscodeOptions, vs VideoStream) (float64, bool) {
	start := opt.StartSegment * SegmentFrames(vs, opt.SegmentSeconds)
	if opt.StartSum == "" || start <= 0 || !vs.ConstantRate || vs.Still || vs.FPS <= 0 {
		return 0, false
	}
	// A quarter frame early: the frame due at the segment's start is kept
	// even if its timestamp is a little early, and the fps filter rounds
	// every on-grid timestamp to the slot a decode from the start gives it.
	return (float64(start) - 0.25) / vs.FPS, true
}

// errSeekMissed: a resume's input seek did not land on the frame
// TranscodeOptions.StartSum names (or found none); nothing was encoded.
var errSeekMissed = errors.New("input seek missed the segment's first frame")

// encodeFrom is EncodeSegments with the resume's input seek resumeSeek
// (seconds; 0: decode from the start and drop the frames before
// StartSegment).
func encodeFrom(ctx context.Context, src string, opt TranscodeOptions, vs VideoStream, enc EncodeOptions, workers int,
	transform func(RawFrame) error, resumeSeek float64) (TranscodeResult, error) {
	res := TranscodeResult{Stream: vs, SegmentFrames: SegmentFrames(vs, opt.SegmentSeconds), Seeked: resumeSeek > 0}
	start := opt.StartSegment * res.SegmentFrames
	res.Frames = start

	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	spec := decodeSpec{rate: vs.Rate, startFrame: start, seek: opt.SeekSeconds, seekKey: opt.SeekKeyframe, maxFrames: opt.MaxFrames}
	p := &pipeline{ctx: ctx, cancel: cancel, src: src, opt: opt, enc: enc, vs: vs, res: &res, transform: transform}
	if !opt.Whole && opt.MaxFrames == 0 {
		p.sums = map[int]string{}
	}
	if resumeSeek > 0 {
		spec.startFrame, spec.seek = 0, resumeSeek
		p.wantFirst = opt.StartSum
	}
	dec, err := startDecoder(ctx, src, spec)
	if err != nil {
		return res, err
	}
	// The first encoder starts now, not at the first frame: its start-up
	// (tens of ms) overlaps the decoder's.
	loopErr := p.startSegment(opt.StartSegment)
	if loopErr == nil {
		loopErr = p.run(dec.stdout, workers, start)
	} else {
		p.abortCurrent()
	}
	if loopErr != nil {
		cancel(loopErr)
	}
	waitErr := dec.wait()
	p.finishAll() // waits for the segment being finished, if any
	if err := context.Cause(ctx); err != nil {
		// The first failure cancelled the pass; later ones (a killed
		// encoder's broken pipe) follow from it.
		loopErr = err
	}
	if loopErr == nil {
		loopErr = p.finishErr
	}
	switch {
	case parent.Err() != nil: // ffmpeg was killed: whatever else failed follows from it
		return res, parent.Err()
	case loopErr != nil && !isFFmpegOutputErr(loopErr):
		return res, loopErr
	case waitErr != nil:
		return res, decodeFailure(src, waitErr)
	case loopErr != nil:
		return res, fmt.Errorf("decode %s: %w", src, loopErr)
	case res.Frames == 0 && opt.SeekSeconds > 0: // past the end, maybe a wrong duration: not bad input
		return res, fmt.Errorf("decode %s: no frame after %g s", src, opt.SeekSeconds)
	case res.Frames == 0:
		return res, &InvalidError{Reason: "no frame could be decoded"}
	}
	return res, nil
}

// pipeline is one EncodeSegments run.
type pipeline struct {
	ctx       context.Context
	cancel    context.CancelCauseFunc
	src       string
	opt       TranscodeOptions
	enc       EncodeOptions
	vs        VideoStream
	res       *TranscodeResult
	transform func(RawFrame) error

	header []byte

	// sums holds the FrameSum of each segment's first frame (read but not
	// yet reported as a finished segment's Next); nil when nobody resumes
	// this pass. wantFirst is the sum the first frame must have (a resume
	// by seek).
	sumMu     sync.Mutex
	sums      map[int]string
	wantFirst string

	// The segment being encoded.
	cur       *ffmpegProc
	curW      *bufio.Writer
	curSeg    Segment
	curTmp    string
	finishing chan struct{} // closed when the previous segment is finished
	finishMu  sync.Mutex
	finishErr error
}

// job is one frame on its way through the workers.
type job struct {
	frame RawFrame
	buf   []byte
	done  chan error
}

func (p *pipeline) run(r io.Reader, workers, start int) error {
	br := bufio.NewReaderSize(r, rawBufSize)
	h, err := readY4MHeader(br)
	if err == io.EOF && p.wantFirst != "" {
		p.abortCurrent()
		return errSeekMissed // StartSum was taken from a frame there: the seek overshot
	}
	if err == io.EOF {
		p.abortCurrent() // nothing left after start: every segment is done
		return nil
	}
	if err != nil {
		p.abortCurrent()
		return &ffmpegOutputError{err}
	}
	p.header = h.line

	// Bounded: nbuf frames exist at once, whatever the video's length.
	nbuf := 2*workers + 2
	pool := make(chan []byte, nbuf)
	for range nbuf {
		pool <- make([]byte, h.frameSize())
	}
	work := make(chan *job, nbuf)
	ordered := make(chan *job, nbuf)
	ctx := p.ctx

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range work {
				j.done <- p.transform(j.frame)
			}
		})
	}
	readErr := make(chan error, 1)
	go func() { // reader: decoder → jobs
		defer close(ordered)
		defer close(work)
		for i := start; ; i++ {
			var buf []byte
			select {
			case buf = <-pool:
			case <-ctx.Done():
				readErr <- nil
				return
			}
			if err := readY4MFrame(br, buf); err != nil {
				switch {
				case err == io.EOF && i == start && p.wantFirst != "":
					err = errSeekMissed
				case err == io.EOF:
					err = nil
				default:
					err = &ffmpegOutputError{err}
				}
				readErr <- err
				return
			}
			if err := p.noteFirst(i, buf); err != nil {
				readErr <- err
				return
			}
			j := &job{frame: frameOf(h, i, buf), buf: buf, done: make(chan error, 1)}
			select {
			case ordered <- j: // capacity nbuf >= frames in flight: never blocks long
			case <-ctx.Done():
				readErr <- nil
				return
			}
			work <- j // workers drain work until it is closed
		}
	}()

	// Writer: jobs in order → encoder.
	var werr error
	for j := range ordered {
		if werr == nil {
			select {
			case err := <-j.done:
				if err != nil {
					werr = fmt.Errorf("transform frame %d: %w", j.frame.Index, err)
				} else {
					werr = p.write(j.frame)
				}
			case <-ctx.Done():
				werr = context.Cause(ctx)
			}
			if werr != nil {
				p.cancel(werr) // stops the reader and kills ffmpeg
			}
		}
		pool <- j.buf
	}
	wg.Wait()
	if err := <-readErr; werr == nil {
		werr = err
	}
	if werr != nil {
		p.cancel(werr)
		p.abortCurrent()
		return werr
	}
	p.finishCurrent()
	return nil
}

// noteFirst records the FrameSum of frame i (raw planes buf, not yet
// transformed) when it starts a segment, and checks a resume's seek.
func (p *pipeline) noteFirst(i int, buf []byte) error {
	if i%p.res.SegmentFrames != 0 || (p.sums == nil && p.wantFirst == "") {
		return nil
	}
	sum := FrameSum(buf)
	if p.wantFirst != "" && i == p.opt.StartSegment*p.res.SegmentFrames && sum != p.wantFirst {
		return errSeekMissed
	}
	if p.sums != nil {
		p.sumMu.Lock()
		p.sums[i] = sum
		p.sumMu.Unlock()
	}
	return nil
}

var frameLine = []byte("FRAME\n")

// write hands f to the current segment's encoder, starting a new segment on
// a segment boundary.
func (p *pipeline) write(f RawFrame) error {
	if p.cur == nil || (!p.opt.Whole && f.Index-p.curSeg.FirstFrame >= p.res.SegmentFrames) {
		p.finishCurrent()
		if err := p.startSegment(f.Index / p.res.SegmentFrames); err != nil {
			return err
		}
	}
	w := p.curW
	if p.curSeg.Frames == 0 {
		if _, err := w.Write(p.header); err != nil {
			return fmt.Errorf("encode segment %d: %w: %s", p.curSeg.Index, err, p.cur.stderr.tail())
		}
	}
	for _, b := range [][]byte{frameLine, f.Y, f.U, f.V} {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("encode segment %d: %w: %s", p.curSeg.Index, err, p.cur.stderr.tail())
		}
	}
	p.curSeg.Frames++
	p.res.Frames++
	if p.opt.Progress != nil {
		p.opt.Progress(p.res.Frames)
	}
	return nil
}

func (p *pipeline) startSegment(index int) error {
	if err := os.MkdirAll(p.opt.WorkDir, 0o755); err != nil {
		return err
	}
	path := SegmentPath(p.opt.WorkDir, index)
	tmp := path + ".part"
	var ain, aout []string
	if p.opt.Whole {
		ain, aout = audioArgs(p.src, p.vs)
		aout = append(aout, "-map_chapters", "-1", "-movflags", "+faststart")
	} else {
		aout = []string{"-an"}
	}
	args := append([]string{"-f", "yuv4mpegpipe", "-i", "pipe:0"}, ain...)
	args = append(append(args, "-map", "0:v"), p.enc.x264Args()...)
	args = append(args, p.vs.colourArgs()...)
	var vf []string
	if p.opt.EncodeCenter { // sized from the frames as decoded (after any rotation)
		vf = append(vf, "crop=w=trunc(iw/32)*16:h=trunc(ih/32)*16:x=trunc((iw-ow)/32)*16:y=trunc((ih-oh)/32)*16")
	}
	if p.vs.SAR != "" {
		vf = append(vf, "setsar="+strings.Replace(p.vs.SAR, ":", "/", 1))
	}
	if len(vf) > 0 {
		args = append(args, "-vf", strings.Join(vf, ","))
	}
	args = append(args, aout...)
	args = append(args, "-map_metadata", "-1", "-f", "mp4", "file:"+tmp)
	enc, err := startFFmpeg(p.ctx, args, true, false)
	if err != nil {
		return err
	}
	p.cur, p.curTmp = enc, tmp
	p.curW = bufio.NewWriterSize(enc.stdin, rawBufSize)
	p.curSeg = Segment{Index: index, FirstFrame: index * p.res.SegmentFrames, Path: path}
	return nil // the y4m header goes with the first frame
}

// finishCurrent closes the current encoder's input and, in the background
// once the previous segment is done, waits for it, renames its file into
// place and reports it. The next segment encodes meanwhile.
func (p *pipeline) finishCurrent() {
	if p.cur == nil {
		return
	}
	if p.curSeg.Frames == 0 { // started ahead, but no frame came
		p.abortCurrent()
		return
	}
	enc, w, seg, tmp := p.cur, p.curW, p.curSeg, p.curTmp
	p.cur, p.curW = nil, nil
	if p.sums != nil {
		// The next segment's first frame, when it was read, has been
		// summed: the reader sums before the frame goes on to be written.
		p.sumMu.Lock()
		seg.Next = p.sums[seg.FirstFrame+seg.Frames]
		delete(p.sums, seg.FirstFrame)
		p.sumMu.Unlock()
	}
	prev := p.finishing
	done := make(chan struct{})
	p.finishing = done
	go func() {
		defer close(done)
		err := w.Flush()
		if cerr := enc.stdin.Close(); err == nil {
			err = cerr
		}
		if werr := enc.wait(); werr != nil {
			err = werr
		} else if err != nil {
			err = fmt.Errorf("%w: %s", err, enc.stderr.tail())
		}
		if prev != nil {
			<-prev
		}
		if err == nil && p.failed() { // a later step failed: the pass is over
			os.Remove(tmp)
			return
		}
		if err == nil {
			err = os.Rename(tmp, seg.Path)
		}
		if err == nil {
			p.finishMu.Lock()
			p.res.Segments = append(p.res.Segments, seg)
			p.finishMu.Unlock()
			if p.opt.OnSegment != nil {
				err = p.opt.OnSegment(seg)
			}
		}
		if err != nil {
			err = fmt.Errorf("segment %d: %w", seg.Index, err)
			p.setFinishErr(err)
			p.cancel(err)
			os.Remove(tmp)
		}
	}()
}

func (p *pipeline) failed() bool {
	p.finishMu.Lock()
	defer p.finishMu.Unlock()
	return p.finishErr != nil
}

func (p *pipeline) setFinishErr(err error) {
	p.finishMu.Lock()
	defer p.finishMu.Unlock()
	if p.finishErr == nil {
		p.finishErr = err
	}
}

// abortCurrent kills the current encoder and removes its partial file.
func (p *pipeline) abortCurrent() {
	if p.cur == nil {
		return
	}
	p.cur.stdin.Close()
	_ = p.cur.cmd.Process.Kill() // not a segment: do not let it write one
	_ = p.cur.cmd.Wait()
	os.Remove(p.curTmp)
	p.cur = nil
}

// finishAll waits for the segment being finished in the background.
func (p *pipeline) finishAll() {
	if p.finishing != nil {
		<-p.finishing
	}
}

// mp4AudioCodecs can be copied into MP4 as they are; anything else is
// re-encoded to AAC.
var mp4AudioCodecs = map[string]bool{"aac": true, "mp3": true, "ac3": true, "eac3": true, "alac": true, "opus": true, "flac": true}

// audioArgs add the first audio stream of src as input 1 of an ffmpeg run
// whose video is input 0: the input's arguments (placed after input 0) and
// the output's, copied when MP4 can hold the codec, else encoded to AAC.
func audioArgs(src string, vs VideoStream) (in, out []string) {
	if !vs.HasAudio {
		return nil, nil
	}
	return []string{"-protocol_whitelist", "file", "-i", "file:" + src}, audioMap(vs, 1)
}

// audioMap is the output arguments that take the first audio stream of
// input number input (one opened on the source), or none without audio.
func audioMap(vs VideoStream, input int) []string {
	if !vs.HasAudio {
		return nil
	}
	stream := strconv.Itoa(input) + ":a:0"
	if mp4AudioCodecs[vs.AudioCodec] {
		return []string{"-map", stream, "-c:a", "copy"}
	}
	return []string{"-map", stream, "-c:a", "aac", "-b:a", "160k"}
}

// MuxSegments joins segment files (in order) into dst, an MP4 with
// +faststart, without re-encoding the video, and adds the first audio stream
// of src: copied when MP4 can hold it, else encoded to AAC. Metadata of src
// is not carried over.
func MuxSegments(ctx context.Context, src string, vs VideoStream, segments []string, dst string) error {
	if len(segments) == 0 {
		return errors.New("mux: no segments")
	}
	list, err := os.CreateTemp(filepath.Dir(segments[0]), "concat-*.txt")
	if err != nil {
		return err
	}
	defer os.Remove(list.Name())
	var b strings.Builder
	b.WriteString("ffconcat version 1.0\n")
	for _, s := range segments {
		abs, err := filepath.Abs(s)
		if err != nil {
			list.Close()
			return err
		}
		b.WriteString("file '" + strings.ReplaceAll(abs, "'", `'\''`) + "'\n")
	}
	if _, err := list.WriteString(b.String()); err != nil {
		list.Close()
		return err
	}
	if err := list.Close(); err != nil {
		return err
	}
	ain, aout := audioArgs(src, vs)
	args := append([]string{"-protocol_whitelist", "file", "-f", "concat", "-safe", "0", "-i", "file:" + list.Name()}, ain...)
	args = append(append(args, "-map", "0:v:0"), aout...)
	args = append(args, "-c:v", "copy", "-map_metadata", "-1", "-map_chapters", "-1",
		"-movflags", "+faststart", "-f", "mp4", "file:"+dst)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	proc, err := startFFmpeg(ctx, args, false, false)
	if err != nil {
		return err
	}
	if err := proc.wait(); err != nil {
		os.Remove(dst)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("mux %s: %w", dst, err)
	}
	return nil
}

// Transcode runs the whole pass in one go, for callers that need no resume
// (the CLI): a video that fits one segment is encoded straight into dst
// (Whole); a longer one is encoded in segments in a temporary directory next
// to dst, then joined by MuxSegments.
func Transcode(ctx context.Context, src, dst string, opt TranscodeOptions, transform func(RawFrame) error) (TranscodeResult, error) {
	if opt.Stream == nil {
		vs, err := ProbeStream(ctx, src)
		if err != nil {
			return TranscodeResult{}, err
		}
		opt.Stream = &vs
	}
	dir, err := os.MkdirTemp(filepath.Dir(dst), ".transcode-*")
	if err != nil {
		return TranscodeResult{}, err
	}
	defer os.RemoveAll(dir)
	opt.WorkDir, opt.StartSegment = dir, 0
	opt.Whole = FitsOneSegment(*opt.Stream, SegmentFrames(*opt.Stream, opt.SegmentSeconds))
	res, err := EncodeSegments(ctx, src, opt, transform)
	if err != nil {
		return res, err
	}
	if opt.Whole && len(res.Segments) == 1 {
		return res, os.Rename(res.Segments[0].Path, dst)
	}
	paths := make([]string, len(res.Segments))
	for i, s := range res.Segments {
		paths[i] = s.Path
	}
	return res, MuxSegments(ctx, src, res.Stream, paths, dst)
}
