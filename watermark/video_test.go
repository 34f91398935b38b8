package watermark

import (
	"bytes"
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRefGeometry: the geometry the embedder reads the host at is the one
// the detector finds on a plainly marked frame.
func TestRefGeometry(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	for _, s := range [][2]int{{1920, 1080}, {1280, 720}, {1440, 1080}, {1920, 800}, {960, 540}, {768, 432}, {640, 360}, {640, 480}} {
		f := naturalFrame(s[0], s[1], int64(s[0]))
		if err := e.Mark(f, 0x77); err != nil {
			t.Fatal(err)
		}
		d := NewDetector(kr)
		d.Add(f)
		c := d.search(uniform)[0][0]
		got := d.refine(0, c)
		z, bx, by := refGeometry(s[0], s[1])
		if got.flip || got.bx != bx || got.by != by || math.Abs(got.zoom/z-1) > 0.01 {
			t.Errorf("%dx%d: detector finds zoom %.4f origin %d,%d flip %t; reference zoom %.4f origin %d,%d",
				s[0], s[1], got.zoom, got.bx, got.by, got.flip, z, bx, by)
		}
	}
}

// markedSoft marks a copy of host with m as frame index and returns its soft
// coded bits along the payload's codeword (positive: right) at the
// reference geometry, and the mark's energy (sum of squared changes).
func markedSoft(t *testing.T, kr Keyring, m *VideoMarker, host Frame, index int) (along []float64, energy float64) {
	t.Helper()
	f := Frame{Y: bytes.Clone(host.Y), Width: host.Width, Height: host.Height, Stride: host.Stride}
	if err := m.Mark(context.Background(), f, index); err != nil {
		t.Fatal(err)
	}
	for i := range f.Y {
		d := float64(f.Y[i]) - float64(host.Y[i])
		energy += d * d
	}
	cells, err := refCells(NewDetector(kr), f)
	if err != nil {
		t.Fatal(err)
	}
	l := m.e.l
	coded := convEncode(infoWord(l.secret, m.p))
	soft := softOf(l, cells)
	for b := range soft {
		soft[b] *= float64(2*int(coded[b]) - 1)
	}
	return soft, energy
}

// TestCancelInterference: on a real busy frame, where the host picture
// turns some coded bits against the mark, the cancelled mark reads every
// coded bit right, at about the plain mark's energy; on camera footage it
// lifts the weakest bits. (On a flat frame, Sintel's first, there is little
// to cancel and the energy moved costs the weakest bits 5%.)
func TestCancelInterference(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes video with ffmpeg")
	}
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	for _, clip := range []string{"Big_Buck_Bunny_1080_10s_2MB.mp4", "one-by-one-person-detection.mp4"} {
		raw := decodeRaw(t, sharedClip(t, clip), "", 1)
		host := raw.luma(0)
		const p = Payload(0x5eed)
		saved := cancelMax
		cancelMax = 1
		plain, ePlain := markedSoft(t, kr, e.Video(p, GridFine, 0), host, 0)
		cancelMax = saved
		cancelled, eCancel := markedSoft(t, kr, e.Video(p, GridFine, 0), host, 0)
		wrong := func(s []float64) (n int) {
			for _, v := range s {
				if v <= 0 {
					n++
				}
			}
			return n
		}
		// The weakest tenth of the bits, which decide a decode.
		p10 := func(s []float64) float64 {
			s = slices.Clone(s)
			slices.Sort(s)
			return s[len(s)/10]
		}
		t.Logf("%s: coded bits read wrong: plain %d, cancelled %d of %d; 10th percentile %.3g -> %.3g; energy ratio %.3f",
			clip, wrong(plain), wrong(cancelled), codedBits, p10(plain), p10(cancelled), eCancel/ePlain)
		if clip == "Big_Buck_Bunny_1080_10s_2MB.mp4" && (wrong(plain) < 10 || wrong(cancelled) > 0) {
			t.Errorf("%s: coded bits read wrong: plain %d, cancelled %d; want the host to turn some against the plain mark and none against the cancelled", clip, wrong(plain), wrong(cancelled))
		}
		if p10(cancelled) <= p10(plain) {
			t.Errorf("%s: cancelling does not lift the weakest bits", clip)
		}
		if r := eCancel / ePlain; r < 0.85 || r > 1.15 {
			t.Errorf("%s: cancelled mark's energy is %.2f times the plain mark's", clip, r)
		}
	}
}

// TestVideoMarkerOrder: marking frames in order, concurrently from an
// in-order dispatch (as media's pipeline does), and resuming at a restart
// point give the same bytes; a block's other frames wait for its first.
func TestVideoMarkerOrder(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	const n, restart, p = 90, 50, Payload(0xabc)
	src := make([]Frame, n)
	for i := range src {
		src[i] = naturalFrame(640, 360, int64(i/20)) // scenes of 20 frames
	}
	clone := func(f Frame) Frame {
		return Frame{Y: bytes.Clone(f.Y), Width: f.Width, Height: f.Height, Stride: f.Stride}
	}
	// A wrong block would wait for a first frame that never comes: fail, not hang.
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()

	seq := make([]Frame, n)
	m := e.Video(p, GridFine, restart)
	for i := range seq {
		seq[i] = clone(src[i])
		if err := m.Mark(ctx, seq[i], i); err != nil {
			t.Fatal(err)
		}
	}

	par := make([]Frame, n)
	m = e.Video(p, GridFine, restart)
	jobs := make(chan int, 6)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 4 {
		wg.Go(func() {
			for i := range jobs {
				errs <- m.Mark(ctx, par[i], i)
			}
		})
	}
	for i := range par {
		par[i] = clone(src[i])
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m = e.Video(p, GridFine, restart)
	for i := restart; i < n; i++ {
		f := clone(src[i])
		if err := m.Mark(ctx, f, i); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Y, seq[i].Y) {
			t.Fatalf("frame %d marked after a resume at %d differs from the first pass", i, restart)
		}
	}
	for i := range par {
		if !bytes.Equal(par[i].Y, seq[i].Y) {
			t.Fatalf("frame %d marked concurrently differs from in order", i)
		}
	}
	// Without the restart, frames 50-63 belong to the block of frame 32,
	// whose host is another scene: their mark differs.
	m = e.Video(p, GridFine, 0)
	for i := 0; i < 51; i++ {
		f := clone(src[i])
		if err := m.Mark(ctx, f, i); err != nil {
			t.Fatal(err)
		}
		if i == 50 && bytes.Equal(f.Y, seq[i].Y) {
			t.Fatal("frame 50 marked the same with and without a block restart at 50")
		}
	}
	// Frames of one block share its first frame's pattern.
	d1 := diff(src[21], seq[21])
	if d2 := diff(src[30], seq[30]); d1 != d2 {
		t.Fatal("frames 21 and 30 (one block, one scene) carry different marks")
	}
	// A block whose first frame never comes: the others wait until ctx ends.
	m = e.Video(p, GridFine, 0)
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := m.Mark(tctx, clone(src[33]), 33); err == nil {
		t.Fatal("frame 33 marked without its block's first frame")
	}
	// A frame far behind the newest blocks is refused, not marked with a
	// pattern rebuilt from another frame.
	m = e.Video(p, GridFine, 0)
	for i := 0; i <= markerBlocks*cancelBlock; i += cancelBlock {
		if err := m.Mark(ctx, clone(src[i%n]), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Mark(ctx, clone(src[1]), 1); err == nil {
		t.Fatal("frame 1 marked after its block was released")
	}
}

// diff is b-a as a string of signed bytes, to compare marks.
func diff(a, b Frame) string {
	d := make([]byte, len(a.Y))
	for i := range d {
		d[i] = b.Y[i] - a.Y[i]
	}
	return string(d)
}

// TestVideoMarkerBlockGrid: GridBlock is not cancelled; Video marks as MarkGrid.
func TestVideoMarkerBlockGrid(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	f := slideFrame(1280, 720, 235)
	want := Frame{Y: bytes.Clone(f.Y), Width: f.Width, Height: f.Height, Stride: f.Stride}
	if err := e.MarkGrid(want, 9, GridBlock); err != nil {
		t.Fatal(err)
	}
	if err := e.Video(9, GridBlock, 0).Mark(context.Background(), f, 7); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Y, want.Y) {
		t.Fatal("Video on GridBlock marks otherwise than MarkGrid")
	}
}
