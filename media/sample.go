package media

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// WithDefaults returns s with every zero (or negative, or NaN) field replaced
// by its DefaultSampler value.
func (s SamplerSettings) WithDefaults() SamplerSettings {
	d := DefaultSampler
	if s.MinIntervalMS <= 0 {
		s.MinIntervalMS = d.MinIntervalMS
	}
	if !(s.SceneThreshold > 0) { // also catches NaN
		s.SceneThreshold = d.SceneThreshold
	}
	if s.MinSceneGapMS <= 0 {
		s.MinSceneGapMS = d.MinSceneGapMS
	}
	if s.MaxFrames <= 0 {
		s.MaxFrames = d.MaxFrames
	}
	if s.Width <= 0 {
		s.Width = d.Width
	}
	if !(s.DenseFPS > 0) || math.IsInf(s.DenseFPS, 0) {
		s.DenseFPS = d.DenseFPS
	}
	if s.DenseWindowMS <= 0 {
		s.DenseWindowMS = d.DenseWindowMS
	}
	if s.MaxDenseWindows <= 0 {
		s.MaxDenseWindows = d.MaxDenseWindows
	}
	return s
}

// jpegQuality is ffmpeg's -q:v for mjpeg (2 best .. 31 worst); 4 keeps text
// on slides legible at ~20 KB per 480p frame.
const jpegQuality = "4"

// SampleFrames decodes the first video stream of path once and emits, in
// presentation order, the frames the model should see:
//
//   - the first frame;
//   - a frame whenever the last pick is at least the interval old;
//   - a frame whose ffmpeg scene score exceeds s.SceneThreshold, when the last
//     pick is at least the scene gap old.
//
// Frame.Scene is set on every picked frame but the first whose scene score
// exceeds the threshold (the score is read back from ffmpeg), including the
// rare frame that the interval rule would have picked anyway.
//
// The interval and scene gap start at s.MinIntervalMS and s.MinSceneGapMS and
// are stretched from info.DurationMS so that at most s.MaxFrames frames spread
// over the whole video; should timestamps still run past the cap (duration
// understated or unknown), sampling stops at s.MaxFrames and returns nil.
//
// Frames are JPEGs s.Width pixels wide (height keeps the display aspect,
// rounded to even). Only the frame being emitted is held in memory. An error
// from emit stops ffmpeg and is returned (wrapped); so is ctx's error.
// A stream too corrupt to decode yields an error wrapping *InvalidError.
func SampleFrames(ctx context.Context, path string, info Info, s SamplerSettings, emit func(Frame) error) error {
	return SampleFramesFrom(ctx, path, info, s, SampleResume{}, emit)
}

// SampleResume is where an interrupted SampleFrames stopped: Next frames
// were emitted, the last at LastPTSMS; AllFrames says the run had fallen
// back to decoding every frame. Each emitted Frame carries the SampleResume
// that continues after it; the zero value starts from the top.
type SampleResume struct {
	Next      int   `json:"next"`
	LastPTSMS int64 `json:"last_pts_ms"`
	AllFrames bool  `json:"all_frames,omitempty"`
}

// resumeSlackMS: a resumed decode starts this much before the last pick, so
// millisecond rounding of the stored timestamp cannot seek past the frame
// whose scene score the next pick's depends on.
const resumeSlackMS = 1

// SampleFramesFrom is SampleFrames continued after r: it seeks to r's last
// pick (an exact input seek: frames before it are decoded but not filtered)
// and emits the picks after it with the indexes, timestamps and scene flags
// an uninterrupted run gives them. The spacing rules carry over since the
// select expression starts from the last pick, selected again and dropped,
// and a frame's scene score depends only on its predecessor, which the seek
// decodes again.
func SampleFramesFrom(ctx context.Context, path string, info Info, s SamplerSettings, r SampleResume, emit func(Frame) error) error {
	s = s.WithDefaults()
	intervalMS, gapMS := coarseSpacing(info.DurationMS, s)
	// Scale before select: the scene score is then computed on small frames,
	// which is most of the speed. settb=1/1000 makes the printed pts exact
	// milliseconds (pts_time is printed with only 6 significant digits).
	// select's 0.1 ms slack keeps float rounding of t from delaying a pick
	// by a frame; coarseSpacing's margin covers it for the cap.
	prev, pick := "prev_selected_t", "isnan(prev_selected_t)+"
	inputArgs := decodeArgs(info)
	if r.AllFrames {
		inputArgs = nil
	}
	if r.Next > 0 {
		// -copyts -start_at_zero keeps the timestamps of an uninterrupted
		// run: both subtract only the file's start time. (Adding the seek
		// back with setpts came out a tick off where the seek is not a whole
		// number of ticks, which moved later picks by a millisecond.) The
		// stored pick is selected again, and dropped below, so that
		// prev_selected_t is its exact time: the stored time is rounded to
		// the millisecond, which can delay the next pick by a frame. Until
		// then the stored time stands in for prev_selected_t, so frames up
		// to it are not picked as such.
		seek := max(r.LastPTSMS-resumeSlackMS, 0)
		inputArgs = append(append([]string{}, inputArgs...), "-copyts", "-start_at_zero", "-ss", msSecs(seek))
		prev = fmt.Sprintf("if(isnan(prev_selected_t),%s,prev_selected_t)", msSecs(r.LastPTSMS))
		pick = fmt.Sprintf("isnan(prev_selected_t)*lt(abs(t-%s),0.0006)+", msSecs(r.LastPTSMS))
	}
	vf := fmt.Sprintf("%s,select='%s(gte(t-%s,%s)+gt(scene,%s)*gte(t-%s,%s))',settb=1/1000,%s",
		scaleFilter(s.Width), pick,
		prev, secs(intervalMS), strconv.FormatFloat(s.SceneThreshold, 'f', -1, 64), prev, secs(gapMS),
		printPTS("lavfi.scene_score"))

	index := r.Next
	lastPTS := r.LastPTSMS
	again := r.Next > 0 // the first frame may be the stored pick, selected again
	err := runFFmpeg(ctx, inputArgs, path, vf, func(jpg []byte, m frameMeta) (bool, error) {
		if again {
			again = false
			if m.hasPTS && m.ptsMS == r.LastPTSMS {
				return false, nil
			}
		}
		if index >= s.MaxFrames {
			slog.WarnContext(ctx, "media: frame cap reached before the end of the video; stopping",
				"path", path, "max_frames", s.MaxFrames, "pts_ms", m.ptsMS, "duration_ms", info.DurationMS)
			return true, nil
		}
		pts := lastPTS
		if m.hasPTS {
			pts = m.ptsMS
		}
		f, err := newFrame(index, pts, jpg)
		if err != nil {
			return true, err
		}
		f.Scene = index > 0 && m.value > s.SceneThreshold
		index++
		lastPTS = pts
		f.Resume = SampleResume{Next: index, LastPTSMS: pts, AllFrames: r.AllFrames}
		return false, emit(f)
	})
	if err == nil && index == 0 && inputArgs != nil {
		// A stream whose frames all claim to be unreferenced: decode them all.
		return SampleFramesFrom(ctx, path, info, s, SampleResume{AllFrames: true}, emit)
	}
	if err == nil && index == 0 {
		err = &InvalidError{Reason: "no frame of the video could be decoded"}
	}
	if err != nil {
		return fmt.Errorf("sample frames of %s: %w", path, err)
	}
	return nil
}

// skipNonRefMinFPS: from this frame rate on, the samplers decode only
// reference frames. Those decode bit-exactly (nothing else is skipped), are
// seldom more than a few frames apart, and are enough for picks at least
// 250 ms apart; skipping the rest halves the decode of typical H.264 with
// B-frames (Big Buck Bunny 1080p60: 207 of 600 frames decoded).
const skipNonRefMinFPS = 15

// decodeArgs are the ffmpeg input options for sampling a video like info.
func decodeArgs(info Info) []string {
	if info.FPS >= skipNonRefMinFPS {
		return []string{"-skip_frame", "noref"}
	}
	return nil
}

// coarseSpacing returns the interval and scene gap (ms) for SampleFrames.
// Every pick after the first is at least gap after the previous one, so
// picks <= 1 + duration/gap; gap >= duration/(MaxFrames-1) (with a margin for
// timestamps past the stated duration) bounds that by MaxFrames. The interval
// stretches to twice that, leaving about half the budget to scene changes.
func coarseSpacing(durationMS int64, s SamplerSettings) (intervalMS, gapMS int64) {
	intervalMS, gapMS = s.MinIntervalMS, s.MinSceneGapMS
	durationMS = min(durationMS, 1<<40) // 35 years: no overflow below
	if durationMS > 0 {
		span := durationMS + durationMS/50 + 200
		if s.MaxFrames <= 1 {
			// Only the first frame: nothing else may ever be picked.
			gapMS = max(gapMS, span+1)
		} else {
			need := (span+int64(s.MaxFrames)-2)/int64(s.MaxFrames-1) + 1
			gapMS = max(gapMS, need)
			intervalMS = max(intervalMS, 2*need)
		}
	}
	return max(intervalMS, gapMS), gapMS
}

// msSecs renders ms as seconds, exactly.
func msSecs(ms int64) string { return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64) }

// secs renders ms as seconds for an ffmpeg expression, 0.1 ms early.
func secs(ms int64) string {
	return strconv.FormatFloat((float64(ms)-0.1)/1000, 'f', 4, 64)
}

// scaleFilter scales to width w keeping the display aspect (sar) with an even
// height. fast_bilinear: these frames are small and every frame is scaled.
func scaleFilter(w int) string {
	return fmt.Sprintf("scale=w=%d:h='max(2,trunc(%d*ih/(iw*sar)/2+0.5)*2)':flags=fast_bilinear,setsar=1", w, w)
}

// printPTS prints each frame's pts (and the value of key) to fd 3, which
// runFFmpeg reads; printing only key means metadata carried in from the file
// (e.g. PNG text chunks) can never inject lines. direct=1 flushes every
// line, without which the reader would wait on a line stuck in a buffer
// while ffmpeg waits on a full stdout: a deadlock.
func printPTS(key string) string {
	return "metadata=mode=print:key=" + key + ":file=/dev/fd/3:direct=1"
}

// SampleWindows re-samples the given time ranges of path densely, in the same
// size and format as SampleFrames: the first frame of every 1/s.DenseFPS
// slot from each window's start, so at most s.DenseFPS frames per second and
// each within a frame period of the slot. Frame.PTSMS is the frame's time in
// the original video and Frame.Index continues across windows.
//
// Only the first s.MaxDenseWindows windows are taken (callers pass the most
// important first); those are clipped at 0, sorted and merged where they
// overlap, so no frame is emitted twice. Each window is a separate ffmpeg run
// that seeks straight to it; should the seek land late (index-less streams
// such as MPEG-TS), the window is redone from up to 10 s before it.
func SampleWindows(ctx context.Context, path string, info Info, windows []Window, s SamplerSettings, emit func(Frame) error) error {
	s = s.WithDefaults()
	index := 0
	for _, w := range mergeWindows(windows[:min(len(windows), s.MaxDenseWindows)]) {
		err := sampleWindow(ctx, path, info, w, w.StartMS, s, &index, emit)
		if errors.Is(err, errLateSeek) {
			err = sampleWindow(ctx, path, info, w, max(0, w.StartMS-seekPrerollMS), s, &index, emit)
		}
		if err != nil {
			return fmt.Errorf("sample window [%d, %d] ms of %s: %w", w.StartMS, w.EndMS, path, err)
		}
	}
	return nil
}

// seekPrerollMS is how far before a window SampleWindows seeks when seeking
// straight to it lost frames; it covers the keyframe interval of most
// encoders (x264's default is 250 frames, 10 s at 25 fps).
const seekPrerollMS = 10_000

// errLateSeek: the first frame of a window came more than a slot after its
// start. Files with an index (MP4, MKV, WebM) seek exactly, but MPEG-TS and
// other index-less streams land near the target and then drop frames up to
// the next keyframe, possibly well inside the window. Nothing has been
// emitted when it is returned.
var errLateSeek = errors.New("seek landed after the window start")

// sampleWindow runs ffmpeg for one window, seeking to fromMS (<= w.StartMS)
// and discarding the frames before w.StartMS itself.
func sampleWindow(ctx context.Context, path string, info Info, w Window, fromMS int64, s SamplerSettings, index *int, emit func(Frame) error) error {
	// Take the first frame in each 1/DenseFPS slot counted from the window
	// start, rather than use the fps filter: that relabels the last frame of
	// a slot with the slot's time, up to half a period off, and duplicates
	// frames of low-rate video. Here PTSMS is the shown frame's own time.
	// Without -copyts the timestamps are shifted so fromMS is 0, so t is
	// exact whatever position the demuxer actually landed on.
	// Then delete whatever metadata the file carried and tag every frame so
	// the print filter (which prints only frames with the key) sees it.
	rate := strconv.FormatFloat(s.DenseFPS, 'f', -1, 64)
	off := strconv.FormatFloat(float64(w.StartMS-fromMS)/1000, 'f', 3, 64)
	vf := fmt.Sprintf("select='gte(t+1e-6,%[1]s)*(isnan(prev_selected_t)+gt(floor((t-%[1]s)*%[2]s+1e-6),floor((prev_selected_t-%[1]s)*%[2]s+1e-6)))',"+
		"%[3]s,settb=1/1000,metadata=mode=delete,metadata=mode=add:key=lavfi.lessonflow:value=1,%[4]s",
		off, rate, scaleFilter(s.Width), printPTS("lavfi.lessonflow"))
	pre := append(decodeArgs(info), "-ss", strconv.FormatFloat(float64(fromMS)/1000, 'f', 3, 64),
		// a hair past the end so a frame exactly at EndMS is included
		"-t", strconv.FormatFloat(float64(w.EndMS-fromMS+1)/1000, 'f', 3, 64))
	slotMS := int64(math.Ceil(1000 / s.DenseFPS))
	lastPTS := int64(-1)
	return runFFmpeg(ctx, pre, path, vf, func(jpg []byte, m frameMeta) (bool, error) {
		if !m.hasPTS {
			return false, nil // cannot place it in time
		}
		pts := fromMS + m.ptsMS
		if lastPTS < 0 && fromMS == w.StartMS && pts > w.StartMS+slotMS {
			return true, errLateSeek
		}
		if pts > w.EndMS {
			return true, nil
		}
		if pts <= lastPTS { // never emit a time twice
			return false, nil
		}
		lastPTS = pts
		f, err := newFrame(*index, pts, jpg)
		if err != nil {
			return true, err
		}
		*index++
		return false, emit(f)
	})
}

// mergeWindows drops empty windows, clips them at 0, sorts them and merges
// overlapping or touching ones.
func mergeWindows(in []Window) []Window {
	var out []Window
	for _, w := range in {
		w.StartMS = max(w.StartMS, 0)
		if w.EndMS >= w.StartMS {
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b Window) int {
		return cmp.Or(cmp.Compare(a.StartMS, b.StartMS), cmp.Compare(a.EndMS, b.EndMS))
	})
	merged := out[:0]
	for _, w := range out {
		if n := len(merged); n > 0 && w.StartMS <= merged[n-1].EndMS {
			merged[n-1].EndMS = max(merged[n-1].EndMS, w.EndMS)
			continue
		}
		merged = append(merged, w)
	}
	return merged
}

func newFrame(index int, ptsMS int64, jpg []byte) (Frame, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(jpg))
	if err != nil {
		return Frame{}, fmt.Errorf("frame %d: ffmpeg wrote an unreadable JPEG: %w", index, err)
	}
	return Frame{Index: index, PTSMS: ptsMS, Width: cfg.Width, Height: cfg.Height, JPEG: jpg}, nil
}

// ffmpegExitTooManyErrors is ffmpeg's exit code when more than -max_error_rate
// (default 2/3) of the frames failed to decode.
const ffmpegExitTooManyErrors = 69

// runFFmpeg decodes the first non-cover-art video stream of path through the
// filter graph vf (which must end in printPTS) and passes each output JPEG
// with its printed metadata to handle, in order, until handle asks to stop or
// returns an error. Stopping early kills ffmpeg and is not an error.
func runFFmpeg(parent context.Context, inputArgs []string, path, vf string, handle func([]byte, frameMeta) (stop bool, err error)) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	metaR, metaW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("metadata pipe: %w", err)
	}
	defer metaR.Close()

	args := []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
		// Read only local files: a playlist-like upload must not make us fetch URLs.
		"-protocol_whitelist", "file"}
	args = append(args, inputArgs...)
	args = append(args,
		"-i", "file:"+path,
		"-map", "0:V:0", "-an", "-sn", "-dn", // V: not attached pictures
		"-vf", vf,
		"-fps_mode", "passthrough", // never duplicate or drop frames to fit a rate
		"-f", "image2pipe", "-c:v", "mjpeg", "-q:v", jpegQuality,
		"pipe:1")
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	cmd.ExtraFiles = []*os.File{metaW} // fd 3
	// A worker killed with SIGKILL must not leave ffmpeg running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr := &tailWriter{max: 8 << 10}
	cmd.Stderr = stderr // exec drains it continuously in its own goroutine
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		metaW.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		metaW.Close()
		return fmt.Errorf("start ffmpeg: %w", err)
	}
	metaW.Close() // ffmpeg holds the only write end now, so its exit means EOF

	q := newMetaQueue()
	go q.fill(metaR)

	var (
		stopped   bool
		handleErr error
		readErr   error
	)
	br := bufio.NewReaderSize(stdout, 64<<10)
	for {
		jpg, err := readJPEG(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		m, ok := q.next()
		if !ok {
			readErr = errors.New("ffmpeg output a frame without a timestamp")
			break
		}
		if parent.Err() != nil { // frames still buffered in the pipe are not wanted
			break
		}
		stop, err := handle(jpg, m)
		if err != nil || stop {
			stopped, handleErr = true, err
			break
		}
	}
	if stopped || readErr != nil {
		cancel() // kills ffmpeg
	}
	waitErr := cmd.Wait()
	q.wait()

	switch {
	case handleErr != nil:
		return handleErr
	case stopped:
		return nil
	case parent.Err() != nil:
		return parent.Err()
	}
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) && exitErr.Exited() { // ffmpeg failed by itself
		if exitErr.ExitCode() == ffmpegExitTooManyErrors {
			return fmt.Errorf("%w (ffmpeg: %s)", &InvalidError{Reason: "the video stream is corrupt: most frames failed to decode"}, stderr.tail())
		}
		return fmt.Errorf("ffmpeg: %w: %s", waitErr, stderr.tail())
	}
	if waitErr != nil && readErr == nil { // killed by a signal not ours, or I/O
		return fmt.Errorf("ffmpeg: %w: %s", waitErr, stderr.tail())
	}
	if readErr != nil { // we killed ffmpeg because its output made no sense
		return fmt.Errorf("read ffmpeg output: %w: %s", readErr, stderr.tail())
	}
	return nil
}

// frameMeta is one record printed by the metadata filter.
type frameMeta struct {
	ptsMS  int64
	hasPTS bool
	value  float64 // the printed key's value, e.g. the scene score
}

// metaQueue carries frameMeta records from the fd 3 reader to the frame loop.
// It is unbounded so the reader never stops draining ffmpeg; records are tiny
// and at most a few frames ahead of the JPEGs.
type metaQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	recs   []frameMeta
	closed bool
	done   chan struct{}
}

func newMetaQueue() *metaQueue {
	q := &metaQueue{done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// fill parses lines like
//
//	frame:3    pts:6000    pts_time:6
//	lavfi.scene_score=0.412000
//
// until r ends.
func (q *metaQueue) fill(r io.Reader) {
	defer close(q.done)
	defer func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		q.cond.Broadcast()
	}()
	var cur *frameMeta
	push := func() {
		if cur == nil {
			return
		}
		q.mu.Lock()
		q.recs = append(q.recs, *cur)
		q.mu.Unlock()
		q.cond.Broadcast()
		cur = nil
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "frame:") {
			push()
			cur = &frameMeta{}
			for _, field := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(field, "pts:"); ok {
					if n, err := strconv.ParseInt(v, 10, 64); err == nil {
						cur.ptsMS, cur.hasPTS = n, true
					}
				}
			}
			continue
		}
		if cur != nil {
			if _, v, ok := strings.Cut(line, "="); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					cur.value = f
				}
			}
			push() // the key line completes the record
		}
	}
	push()
	// On a scan error (a line over 64 KiB cannot come from the filter), keep
	// draining so ffmpeg never blocks on fd 3.
	_, _ = io.Copy(io.Discard, r)
}

// next returns the next record, waiting for it; false once none will come.
func (q *metaQueue) next() (frameMeta, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.recs) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.recs) == 0 {
		return frameMeta{}, false
	}
	m := q.recs[0]
	q.recs = q.recs[1:]
	return m, true
}

func (q *metaQueue) wait() { <-q.done }

// maxJPEG bounds one frame; a 4K frame at -q:v 4 is a few MB.
const maxJPEG = 32 << 20

var errJPEGTooLarge = errors.New("jpeg frame over 32 MiB")

// readJPEG reads one JPEG image from a concatenated stream. It follows the
// marker segments by their lengths and scans only entropy-coded data for the
// next marker (where 0xFF is always stuffed as FF00 or is a restart marker),
// so FFD9 inside a table can never end a frame early. io.EOF means the
// stream ended cleanly between images.
func readJPEG(r *bufio.Reader) ([]byte, error) {
	b0, err := r.ReadByte()
	if err != nil {
		return nil, err // io.EOF: clean end
	}
	b1, err := r.ReadByte()
	if err != nil {
		return nil, noEOF(err)
	}
	if b0 != 0xFF || b1 != 0xD8 {
		return nil, fmt.Errorf("jpeg stream: want SOI, got %02X%02X", b0, b1)
	}
	buf := make([]byte, 0, 32<<10)
	buf = append(buf, 0xFF, 0xD8)
	m, fill, err := readMarker(r)
	for {
		if err != nil {
			return nil, err
		}
		if len(buf) > maxJPEG {
			return nil, errJPEGTooLarge
		}
		buf = appendMarker(buf, fill, m)
		switch {
		case m == 0xD9: // EOI
			return buf, nil
		case m == 0x01 || (m >= 0xD0 && m <= 0xD8): // standalone markers
			m, fill, err = readMarker(r)
			continue
		}
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, noEOF(err)
		}
		n := int(l[0])<<8 | int(l[1])
		if n < 2 {
			return nil, fmt.Errorf("jpeg stream: bad segment length %d", n)
		}
		buf = append(buf, l[:]...)
		start := len(buf)
		buf = slices.Grow(buf, n-2)[:start+n-2]
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			return nil, noEOF(err)
		}
		if m != 0xDA { // not SOS
			m, fill, err = readMarker(r)
			continue
		}
		// Entropy-coded data up to the next real marker.
		for {
			chunk, err := r.ReadSlice(0xFF)
			if err == bufio.ErrBufferFull {
				buf = append(buf, chunk...)
				if len(buf) > maxJPEG {
					return nil, errJPEGTooLarge
				}
				continue
			}
			if err != nil {
				return nil, noEOF(err)
			}
			buf = append(buf, chunk[:len(chunk)-1]...)
			next, fills, err := skipFill(r)
			if err != nil {
				return nil, err
			}
			if next == 0x00 || (next >= 0xD0 && next <= 0xD7) { // stuffing, restart
				buf = appendMarker(buf, fills, next)
				continue
			}
			m, fill = next, fills
			break
		}
	}
}

// appendMarker appends FF, the fill bytes seen before the code, and the code,
// so frames come out byte for byte as ffmpeg wrote them.
func appendMarker(buf []byte, fill int, code byte) []byte {
	buf = append(buf, 0xFF)
	for range fill {
		buf = append(buf, 0xFF)
	}
	return append(buf, code)
}

// readMarker reads FF, any fill bytes, and returns the marker code and the
// number of fill bytes.
func readMarker(r *bufio.Reader) (byte, int, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, 0, noEOF(err)
	}
	if c != 0xFF {
		return 0, 0, fmt.Errorf("jpeg stream: want marker, got %02X", c)
	}
	return skipFill(r)
}

// skipFill returns the first byte after any 0xFF fill bytes, and their count.
func skipFill(r *bufio.Reader) (byte, int, error) {
	for n := 0; ; n++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, 0, noEOF(err)
		}
		if c != 0xFF {
			return c, n, nil
		}
		if n > maxJPEG {
			return 0, 0, errJPEGTooLarge
		}
	}
}

func noEOF(err error) error {
	if err == io.EOF {
		return fmt.Errorf("jpeg stream: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// tailWriter keeps the last max bytes of ffmpeg's stderr for error messages.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 2*w.max {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.max:]...)
	}
	return len(p), nil
}

// tail returns the last lines of stderr (at most ~1 KiB), one line.
func (w *tailWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.buf
	if len(b) > 1024 {
		b = b[len(b)-1024:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(no output on stderr)"
	}
	return strings.ReplaceAll(s, "\n", " | ")
}
