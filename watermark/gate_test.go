package watermark

import (
	"bytes"
	"math/rand"
	"testing"
)

// gateBlock feeds gate one block of n frames of a dark w x h picture at
// half size, in which the rectangle [x0,x1)×[y0,y1) (full-size px) scrolls
// a line of text-like noise up every frame, and returns the decision.
func gateBlock(t *testing.T, g *MotionGate, w, h, n, x0, y0, x1, y1 int, seed int64) Gate {
	t.Helper()
	fw, fh := w/2, h/2
	r := rand.New(rand.NewSource(seed))
	text := make([]byte, fw*(fh+n))
	for i := range text {
		if r.Intn(6) == 0 {
			text[i] = 200
		} else {
			text[i] = 20
		}
	}
	for k := range n {
		f := Frame{Y: bytes.Repeat([]byte{20}, fw*fh), Width: fw, Height: fh, Stride: fw}
		for y := y0 / 2; y < y1/2; y++ {
			copy(f.Y[y*fw+x0/2:y*fw+x1/2], text[(y+k)*fw+x0/2:])
		}
		if err := g.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	return g.Done()
}

// TestMotionGate: still content is never gated; a scrolling column is,
// with its neighbouring squares and nothing else; full-frame motion is
// capped at gateCap of the frame; a block of one frame has no pairs to
// judge. The same frames always decide alike, and GatedOffsets leaves
// exactly the gated squares unmarked.
func TestMotionGate(t *testing.T) {
	const w, h = 1920, 1080
	g, err := NewMotionGate(w, h)
	if err != nil {
		t.Fatal(err)
	}
	if s := gateBlock(t, g, w, h, GateFrames, 0, 0, 0, 0, 1).Share(); s != 0 {
		t.Fatalf("still frames: %.3f gated", s)
	}
	// Squares 10-13 across, 4-9 down scroll: gated are columns 9-14 and
	// rows 3-10 (one square of dilation).
	col := gateBlock(t, g, w, h, GateFrames, 10*gateSquare, 4*gateSquare, 14*gateSquare, 10*gateSquare, 2)
	for cy := range col.ny {
		for cx := range col.nx {
			want := cx >= 9 && cx <= 14 && cy >= 3 && cy <= 10
			if got := col.off[cy*col.nx+cx]; got != want {
				t.Fatalf("scrolling column: square (%d,%d) gated %t, want %t", cx, cy, got, want)
			}
		}
	}
	again := gateBlock(t, g, w, h, GateFrames, 10*gateSquare, 4*gateSquare, 14*gateSquare, 10*gateSquare, 2)
	if !bytes.Equal(boolBytes(col.off), boolBytes(again.off)) {
		t.Fatal("the same frames gated differently")
	}
	if s := gateBlock(t, g, w, h, GateFrames, 0, 0, w, h, 3).Share(); s > gateCap || s < gateCap/4 {
		t.Fatalf("full-frame motion: %.3f gated, want some, under the cap %.2f", s, gateCap)
	}
	if s := gateBlock(t, g, w, h, 1, 0, 0, w, h, 4).Share(); s != 0 {
		t.Fatalf("a one-frame block: %.3f gated", s)
	}
	// Motion in fewer than gatePairs pairs (a page turn, a cursor) keeps
	// the mark.
	if s := gateBlock(t, g, w, h, gatePairs, 0, 0, w, h, 5).Share(); s != 0 {
		t.Fatalf("motion in %d pairs: %.3f gated", gatePairs-1, s)
	}

	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	m := e.Video(0xfeed, GridBlock, 0)
	off, _ := m.Offsets(w, h)
	gated, ok := m.GatedOffsets(w, h, col)
	if !ok {
		t.Fatal("no gated offsets")
	}
	for y := range h {
		for x := range w {
			i := y*w + x
			if col.off[(y/gateSquare)*col.nx+x/gateSquare] {
				if gated[i] != 128 {
					t.Fatalf("gated pixel (%d,%d) carries offset %d", x, y, int(gated[i])-128)
				}
			} else if gated[i] != off[i] {
				t.Fatalf("pixel (%d,%d) outside the gate: %d, want %d", x, y, gated[i], off[i])
			}
		}
	}
	if again, _ := m.Offsets(w, h); !bytes.Equal(again, off) {
		t.Fatal("GatedOffsets changed the plane Offsets gives")
	}
	if _, ok := m.GatedOffsets(1280, 720, col); ok {
		t.Fatal("a 1080p gate gave 720p offsets")
	}
	if _, ok := e.Video(0xfeed, GridFine, 0).GatedOffsets(w, h, col); ok {
		t.Fatal("the fine grid gave gated offsets")
	}
	// Frames of another size than the video's, or changing size within a
	// block, are refused.
	if err := g.Add(Frame{Y: make([]byte, 4000*10), Width: 4000, Height: 10, Stride: 4000}); err == nil {
		t.Fatal("a frame wider than the video was taken")
	}
	if err := g.Add(Frame{Y: make([]byte, 960*540), Width: 960, Height: 540, Stride: 960}); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(Frame{Y: make([]byte, 480*270), Width: 480, Height: 270, Stride: 480}); err == nil {
		t.Fatal("a block changed frame size")
	}
	if _, err := NewMotionGate(10, 10); err == nil {
		t.Fatal("a 10x10 video was gated")
	}
}

func boolBytes(b []bool) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		if v {
			out[i] = 1
		}
	}
	return out
}
