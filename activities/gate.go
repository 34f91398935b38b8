package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

// gatedPlanes serves the block grid's offset planes with the motion gate
// (watermark.MotionGate), block by block, from a quarter-size decode of the
// source that runs ahead of the pass. Each block's gate reads that block's
// frames only, from the block's first frame, so a pass that resumes (or
// falls back to the pipe) mid-video gets the same planes.
type gatedPlanes struct {
	parent context.Context
	src    string
	vs     media.VideoStream
	marker *watermark.VideoMarker

	mu     sync.Mutex
	next   int // the block the running decode yields next
	ch     chan gatedPlane
	stop   context.CancelFunc
	end    error          // what the decode ended with (io.EOF: the video's end), once next reached it
	recent map[int][]byte // the last few planes, for a pipe's workers slightly out of order
}

type gatedPlane struct {
	plane []byte
	err   error
}

// gateDecodeScale: the gate reads a decode at a quarter of the size (8 px
// per gate square at 1080p). The sweep gates the same squares from it as
// from the full frames (README, "Twenty-fourth round"), and it spares
// most of the scaling and relay; the decode itself is the gate's cost.
const gateDecodeScale = 4

// gatedRecent planes are kept: a pipe has a few frames per worker in flight,
// far under a block.
const gatedRecent = 3

func newGatedPlanes(ctx context.Context, src string, vs media.VideoStream, marker *watermark.VideoMarker) *gatedPlanes {
	return &gatedPlanes{parent: ctx, src: src, vs: vs, marker: marker, recent: map[int][]byte{}}
}

// Plane is block's offsets (media.OffsetBlocks.Plane), io.EOF past the
// video's end. Safe for concurrent use.
func (g *gatedPlanes) Plane(ctx context.Context, block int) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p, ok := g.recent[block]; ok {
		return p, nil
	}
	if g.ch == nil || block < g.next {
		g.restart(block)
	}
	for g.next <= block {
		if g.end != nil {
			return nil, g.end
		}
		var p gatedPlane
		select {
		case p = <-g.ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if p.err != nil {
			g.end = p.err
			continue
		}
		g.recent[g.next] = p.plane
		delete(g.recent, g.next-gatedRecent)
		g.next++
	}
	return g.recent[block], nil
}

// restart starts the decode at block's first frame (under mu).
func (g *gatedPlanes) restart(block int) {
	g.close()
	ctx, stop := context.WithCancel(g.parent)
	g.ch, g.stop, g.next, g.end = make(chan gatedPlane, 1), stop, block, nil
	clear(g.recent)
	go g.decode(ctx, block, g.ch)
}

// Close stops the decode, if one runs.
func (g *gatedPlanes) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.close()
}

func (g *gatedPlanes) close() {
	if g.stop != nil {
		g.stop()
		g.stop, g.ch = nil, nil
	}
}

// decode feeds the gate a quarter-size decode from block on and sends a plane
// per block, then io.EOF (or what failed).
func (g *gatedPlanes) decode(ctx context.Context, block int, ch chan<- gatedPlane) {
	send := func(p gatedPlane) bool {
		select {
		case ch <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	w, h := g.vs.DecodedSize()
	gate, err := watermark.NewMotionGate(w, h)
	if err != nil {
		send(gatedPlane{err: err})
		return
	}
	planeOf := func(b int) gatedPlane {
		plane, ok := g.marker.GatedOffsets(w, h, gate.Done())
		if !ok {
			return gatedPlane{err: fmt.Errorf("motion gate of block %d: no offsets for %dx%d frames", b, w, h)}
		}
		return gatedPlane{plane: plane}
	}
	frames, b := 0, block
	errSent := errors.New("plane not taken")
	vs := g.vs
	_, err = media.Decode(ctx, g.src, media.DecodeOptions{MaxWidth: max(1, w/gateDecodeScale), MaxHeight: max(1, h/gateDecodeScale),
		StartFrame: block * watermark.GateFrames, Stream: &vs}, func(f media.RawFrame) error {
		if err := gate.Add(watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width}); err != nil {
			return err
		}
		if frames++; frames%watermark.GateFrames == 0 {
			if !send(planeOf(b)) {
				return errSent
			}
			b++
		}
		return nil
	})
	switch {
	case errors.Is(err, errSent) || ctx.Err() != nil:
		return
	case err != nil:
		send(gatedPlane{err: fmt.Errorf("motion gate from frame %d: %w", block*watermark.GateFrames, err)})
		return
	}
	if frames%watermark.GateFrames != 0 && !send(planeOf(b)) {
		return
	}
	send(gatedPlane{err: io.EOF})
}
