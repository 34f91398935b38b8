package media

// The one-process pass: when every frame gets the same luma offsets
// (TranscodeOptions.LumaOffsets), or every frame of a block of frames
// (OffsetBlocks, fed on stdin), one ffmpeg run decodes, adds them with the
// blend filter and encodes, in segments cut by its segment muxer. It makes
// the same frames as the pipe with a transform adding the offsets, cut
// into the same segments.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// errOffsetsFailed: the one-process pass failed in ffmpeg (not by ctx);
// EncodeSegments goes on through the pipe.
var errOffsetsFailed = errors.New("one-process pass failed")

func withoutOffsets(opt TranscodeOptions) TranscodeOptions {
	opt.LumaOffsets, opt.OffsetBlocks = nil, nil
	return opt
}

// encodeOffsets runs the pass in one ffmpeg process. Segments are reported
// (renamed into place, OnSegment) as soon as the segment muxer has moved
// past them. The same process fingerprints every segment's first frame
// before the offsets (a framehash output of those frames alone), so that
// segments carry Next as the pipe's do. A resume (StartSegment > 0) with
// resumeSeek > 0 starts the decoder there and keeps the seek only if the
// first frame has StartSum's fingerprint (else errSeekMissed, nothing
// reported); without it, it decodes from the start and trims.
func encodeOffsets(ctx context.Context, src string, opt TranscodeOptions, vs VideoStream, enc EncodeOptions, resumeSeek float64) (TranscodeResult, error) {
	segFrames := SegmentFrames(vs, opt.SegmentSeconds)
	start := opt.StartSegment * segFrames
	res := TranscodeResult{Stream: vs, SegmentFrames: segFrames, Frames: start, Seeked: resumeSeek > 0}
	w, h := vs.DecodedSize()
	if opt.OffsetBlocks == nil && len(opt.LumaOffsets) != w*h {
		return res, fmt.Errorf("%w: %d luma offsets for %dx%d frames", errOffsetsFailed, len(opt.LumaOffsets), w, h)
	}
	if err := os.MkdirAll(opt.WorkDir, 0o755); err != nil {
		return res, err
	}
	// One yuv420p frame per plane: the offsets, and chroma at 128, which
	// the blend leaves as it is.
	chroma := []byte(strings.Repeat("\x80", 2*(w/2)*(h/2)))
	planeInput := []string{"-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", fmt.Sprintf("%dx%d", w, h)}
	planes, planesChain := "[1:v]", ""
	planeName := ""
	if opt.OffsetBlocks == nil {
		plane, err := os.CreateTemp(opt.WorkDir, "offsets-*.yuv")
		if err != nil {
			return res, err
		}
		defer os.Remove(plane.Name())
		_, err = plane.Write(append(append([]byte(nil), opt.LumaOffsets...), chroma...))
		if cerr := plane.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return res, err
		}
		planeName = plane.Name()
		planeInput = append(planeInput, "-i", "file:"+planeName)
	} else {
		// The blocks' planes come on stdin, each stamped with its block's
		// first frame in the decoded frames' time base (1/rate, counted
		// from this run's first frame): blend takes, for every frame, the
		// newest plane not after it. The run's first block may have begun
		// before it.
		heads, err := os.CreateTemp(opt.WorkDir, "offsets-*")
		if err != nil {
			return res, err
		}
		heads.Close()
		defer os.Remove(heads.Name())
		planeName = heads.Name()
		b := opt.OffsetBlocks.Frames
		planeInput = append(planeInput, "-protocol_whitelist", "pipe", "-i", "pipe:0")
		planes, planesChain = "[planes]", fmt.Sprintf("[1:v]settb=%s,setpts='max(0,N*%d-%d)'[planes];", invRate(vs.Rate), b, start%b)
	}

	// setpts: the frames are numbered from 0, as the pipe's encoder numbers
	// what it reads. blend repeats its one offsets frame for every frame.
	spec := decodeSpec{rate: vs.Rate, startFrame: start}
	if resumeSeek > 0 {
		spec.startFrame = 0
	}
	graph := planesChain + "[0:V:0]" + spec.filter() + ",setpts=PTS-STARTPTS,format=yuv420p"
	headsPath := ""
	if !opt.Whole {
		headsPath = filepath.Join(opt.WorkDir, filepath.Base(planeName)+".heads")
		defer os.Remove(headsPath)
		graph += fmt.Sprintf(",split[src][all];[all]select='not(mod(n\\,%d))'[heads];[src]", segFrames)
	} else {
		graph += "[src];[src]"
	}
	graph += planes + "blend=all_mode=grainmerge"
	if vs.SAR != "" {
		graph += ",setsar=" + strings.Replace(vs.SAR, ":", "/", 1)
	}
	graph += "[v]"
	args := []string{"-protocol_whitelist", "file"}
	if resumeSeek > 0 {
		args = append(args, "-ss", strconv.FormatFloat(resumeSeek, 'f', 3, 64))
	}
	args = append(append(args, "-i", "file:"+src), planeInput...)
	args = append(args, "-filter_complex", graph, "-map", "[v]", "-fps_mode", "passthrough", "-map_metadata", "-1", "-map_chapters", "-1")
	args = append(append(args, enc.x264Args()...), vs.colourArgs()...)
	part := func(i int) string { return SegmentPath(opt.WorkDir, i) + ".part" }
	if opt.Whole {
		args = append(append(args, audioMap(vs, 0)...), "-movflags", "+faststart", "-f", "mp4", "file:"+part(0))
	} else {
		// An IDR frame at every segment's first frame, and the muxer cuts
		// there: the segments of the pipe, which starts an encoder for each.
		// The cut list reaches well past the probed length; a longer video
		// only gets a longer last segment.
		want := max(1, int(vs.DurationSec*vs.FPS)/segFrames+1-opt.StartSegment)
		cuts := make([]string, 0, 2*want+8)
		for i := 1; i <= 2*want+8; i++ {
			cuts = append(cuts, strconv.Itoa(i*segFrames))
		}
		pattern := strings.ReplaceAll(filepath.Join(opt.WorkDir, "seg-"), "%", "%%") + "%06d.mp4.part"
		args = append(args, "-an", "-forced-idr", "1", "-force_key_frames", fmt.Sprintf("expr:gte(n,n_forced*%d)", segFrames),
			"-f", "segment", "-segment_format", "mp4", "-segment_frames", strings.Join(cuts, ","),
			"-segment_start_number", strconv.Itoa(opt.StartSegment), "-reset_timestamps", "1", "file:"+pattern,
			// The heads' SHA-256 is FrameSum's: rawvideo packs the planes
			// tightly, as y4m does. Flushed per frame, so a segment's Next
			// is on disk soon after the muxer moves past it.
			"-map", "[heads]", "-c:v", "rawvideo", "-fps_mode", "passthrough", "-flush_packets", "1",
			"-f", "framehash", "-hash", "sha256", "file:"+headsPath)
	}
	args = append(args, "-progress", "pipe:1")
	proc, err := startFFmpeg(ctx, args, opt.OffsetBlocks != nil, true)
	if err != nil {
		return res, err
	}
	planesDone := make(chan error, 1)
	if opt.OffsetBlocks != nil {
		go func() {
			planesDone <- feedPlanes(ctx, proc, opt.OffsetBlocks, start/opt.OffsetBlocks.Frames, w*h, chroma)
		}()
	} else {
		planesDone <- nil
	}

	// next is the first segment not reported; whatever was not reported
	// is not a segment.
	next := opt.StartSegment
	defer func() {
		for i := next; fileExists(part(i)); i++ {
			os.Remove(part(i))
		}
	}()
	// A seeked run's first frame must be the one StartSum names: checked
	// as soon as its fingerprint is out, before any progress is told.
	checked := resumeSeek == 0
	check := func(final bool) error {
		if checked {
			return nil
		}
		switch heads := readHeads(headsPath); {
		case len(heads) > 0 && heads[0] == opt.StartSum:
			checked = true
		case len(heads) > 0 || final:
			return errSeekMissed
		}
		return nil
	}
	report := func(i, frames int, last bool) error {
		if err := check(true); err != nil {
			return err
		}
		heads := readHeads(headsPath)
		seg := Segment{Index: i, FirstFrame: i * segFrames, Frames: frames, Path: SegmentPath(opt.WorkDir, i)}
		if k := i - opt.StartSegment + 1; !last && k < len(heads) {
			seg.Next = heads[k]
		}
		// The cuts follow from forced IDR frames; the count in the file's
		// index (no scan) confirms them before a retry relies on them.
		if n, err := mp4Frames(ctx, part(i)); err != nil || n != frames {
			return fmt.Errorf("%w: segment %d holds %d frames, want %d (%v)", errOffsetsFailed, i, n, frames, err)
		}
		if err := os.Rename(part(i), seg.Path); err != nil {
			return err
		}
		res.Segments = append(res.Segments, seg)
		next = i + 1
		if opt.OnSegment != nil {
			if err := opt.OnSegment(seg); err != nil {
				return fmt.Errorf("segment %d: %w", i, err)
			}
		}
		return nil
	}
	frames, told := 0, 0 // encoded by this run; told to Progress
	tell := func() {
		for ; told < frames && checked; told++ {
			if opt.Progress != nil {
				opt.Progress(start + told + 1)
			}
		}
	}
	var loopErr error
	sc := bufio.NewScanner(proc.stdout)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), "=")
		switch key {
		case "frame":
			if n, err := strconv.Atoi(val); err == nil && n > frames {
				frames = n
			}
		case "progress":
			loopErr = check(false)
			tell()
			// The muxer opens a segment's file only after closing the one
			// before it. The next segment's first fingerprint may come a
			// little later than its file: the segment waits for it.
			for loopErr == nil && !opt.Whole && fileExists(part(next+1)) && len(readHeads(headsPath)) > next-opt.StartSegment+1 {
				loopErr = report(next, segFrames, false)
			}
		}
		if loopErr != nil {
			proc.cmd.Process.Kill()
			break
		}
	}
	waitErr := proc.wait()
	planeErr := <-planesDone
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case loopErr != nil:
		return res, loopErr
	case planeErr != nil:
		return res, planeErr
	case waitErr != nil:
		return res, fmt.Errorf("%w: %w", errOffsetsFailed, waitErr)
	case frames == 0 && resumeSeek > 0:
		return res, errSeekMissed // StartSum was taken from a frame there: the seek overshot
	case frames == 0 && start == 0:
		return res, fmt.Errorf("%w: no frame", errOffsetsFailed) // the pipe says why
	}
	res.Frames = start + frames
	if err := check(true); err != nil {
		return res, err
	}
	tell()
	for i := next; fileExists(part(i)); i++ {
		n := min(segFrames, res.Frames-i*segFrames)
		last := opt.Whole || !fileExists(part(i+1))
		if last {
			n = res.Frames - i*segFrames
		}
		if n <= 0 {
			return res, fmt.Errorf("%w: segment %d holds no frame of %d", errOffsetsFailed, i, res.Frames)
		}
		if err := report(i, n, last); err != nil {
			return res, err
		}
	}
	return res, nil
}

// feedPlanes writes the offset planes from block first on, until the last
// (or until ffmpeg stops reading), then closes ffmpeg's stdin. A plane that
// cannot be had stops ffmpeg: that error is the pass's, not ffmpeg's, so
// it does not send the pass to the pipe (which would ask for it again).
func feedPlanes(ctx context.Context, proc *ffmpegProc, ob *OffsetBlocks, first, size int, chroma []byte) error {
	defer proc.stdin.Close()
	for b := first; ; b++ {
		plane, err := ob.Plane(ctx, b)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err == nil && len(plane) != size { // as a wrong LumaOffsets: the pipe's transform may cope
			proc.cmd.Process.Kill()
			return fmt.Errorf("%w: block %d: %d offsets for %d pixels", errOffsetsFailed, b, len(plane), size)
		}
		if err != nil {
			proc.cmd.Process.Kill()
			return fmt.Errorf("offsets of block %d: %w", b, err)
		}
		if _, err := proc.stdin.Write(plane); err != nil {
			return nil // ffmpeg is gone: its exit says why
		}
		if _, err := proc.stdin.Write(chroma); err != nil {
			return nil
		}
	}
}

// invRate is the time base of frames at rate ("30000/1001" or "25").
func invRate(rate string) string {
	if n, d, ok := strings.Cut(rate, "/"); ok {
		return d + "/" + n
	}
	return "1/" + rate
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// mp4Frames is the frame count an MP4's index gives for its video stream.
func mp4Frames(ctx context.Context, path string) (int, error) {
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-protocol_whitelist", "file", "-select_streams", "v:0",
		"-show_entries", "stream=nb_frames", "-of", "csv=p=0", "file:"+path).Output()
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// readHeads reads the FrameSums of a framehash file (complete lines only).
func readHeads(path string) []string {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var sums []string
	for line := range strings.Lines(string(b)) {
		f := strings.Split(strings.TrimSpace(line), ",")
		if !strings.HasSuffix(line, "\n") || strings.HasPrefix(line, "#") || len(f) != 6 {
			continue
		}
		if h := strings.TrimSpace(f[5]); len(h) == 64 {
			sums = append(sums, h[:16])
		}
	}
	return sums
}
