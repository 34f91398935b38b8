package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"testing"
)

// RawFrames decodes video with ffmpeg and calls fn with each yuv420p frame
// (Y plane, then U and V at half size) and the output size. args are the
// input side and output options (e.g. "-i", path, "-vf", vf, "-t", "4");
// RawFrames adds the raw output. The size is probed first with a one-frame
// run of the same args, so filters that scale or crop are accounted for.
// fn's frame is reused for the next one: copy it to keep it. It returns the
// frame count.
func RawFrames(t testing.TB, args []string, fn func(frame []byte, w, h int)) int {
	t.Helper()
	base := append([]string{"-hide_banner", "-loglevel", "error"}, args...)
	hdr, err := exec.Command("ffmpeg", append(append([]string{}, base...), "-frames:v", "1", "-f", "image2pipe", "-c:v", "pgm", "-")...).Output()
	if err != nil {
		t.Fatalf("probe ffmpeg %v: %v", args, err)
	}
	var w, h int
	if _, err := fmt.Sscanf(string(hdr), "P5\n%d %d", &w, &h); err != nil {
		t.Fatalf("probe ffmpeg %v: header: %v", args, err)
	}
	cmd := exec.Command("ffmpeg", append(base, "-an", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(out, 1<<20)
	buf := make([]byte, w*h+2*((w+1)/2)*((h+1)/2))
	n := 0
	for {
		if _, err := io.ReadFull(r, buf); err != nil {
			break
		}
		fn(buf, w, h)
		n++
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("decode ffmpeg %v: %v\n%s", args, err, stderr.String())
	}
	return n
}
