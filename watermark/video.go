package watermark

import (
	"context"
	"fmt"
	"sync"
)

// VideoMarker marks the frames of one video: one payload, one grid, and on
// GridFine a pattern per block of cancelBlock frames that cancels the host
// picture's interference (see cancelPattern), built from the block's first
// frame before that frame is marked. Blocks restart at every multiple of
// restart frames (the pass's segment length; 0 for never), so a pass resumed
// at a segment boundary builds the same patterns as the first attempt.
//
// Mark is safe for concurrent use, in the way a decode pipeline calls it:
// every block's first frame must be handed to Mark, no later than the
// block's other frames (which wait for its pattern, until ctx ends should
// it never come), and a frame may lag the newest block begun by at most
// markerBlocks-1 blocks (later, it is an error). A block's first frame
// also waits for the previous block's within a segment (the allocation's
// motion term), so a video is marked from its start or from a restart.
type VideoMarker struct {
	e       *Embedder
	p       Payload
	grid    Grid
	restart int

	mu       sync.Mutex
	blocks   map[int]*markBlock // by first frame
	released int                // blocks from earlier first frames were dropped
	plane    []byte             // Offsets' last plane (under mu), which GatedOffsets copies
}

// markBlock is one block's pattern, ready once its first frame was read.
type markBlock struct {
	ready   chan struct{}
	claimed bool // its first frame is being read (under VideoMarker.mu)
	pt      *pattern
	scale   []float32 // the energy allocation's per-block scales (allocate)
	host    []float32 // its first frame at the detector's grid, for the next block's allocation
	err     error
}

// markerBlocks is how many blocks a VideoMarker keeps: a pipeline has a few
// frames per worker in flight, far under one block.
const markerBlocks = 4

// Video prepares the marking of one video with payload p on grid g; restart
// is the pass's segment length in frames, or 0.
func (e *Embedder) Video(p Payload, g Grid, restart int) *VideoMarker {
	return &VideoMarker{e: e, p: p, grid: g, restart: max(restart, 0), blocks: map[int]*markBlock{}}
}

// Offsets is the mark of every w x h frame of the video when it does not
// depend on the frame's picture, as on GridBlock (whole levels over whole
// cells, no masking, no cancellation): a luma plane of w*h bytes holding
// 128 plus each pixel's offset. Mark then gives clip(Y + offset) at every
// pixel, so a pass may add the plane outside Go (ffmpeg's blend filter in
// grainmerge mode computes exactly that), sparing the raw frames their trip
// through this process. ok is false where Mark depends on the picture
// (GridFine, or a frame too small for the block grid).
func (m *VideoMarker) Offsets(w, h int) (offsets []byte, ok bool) {
	plane, ok := m.offsets(w, h)
	return append([]byte(nil), plane...), ok
}

// offsets is Offsets' plane, shared: not to be changed.
func (m *VideoMarker) offsets(w, h int) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.plane) == w*h && w > 0 {
		return m.plane, true
	}
	f := Frame{Y: make([]byte, w*h), Width: w, Height: h, Stride: w}
	if m.grid != GridBlock || f.validate(MinMarkWidth, MinMarkHeight) != nil || blockCell(w, h) == 0 {
		return nil, false
	}
	for i := range f.Y {
		f.Y[i] = 128 // offsets are a level or so: never saturated here
	}
	m.e.addPattern(f, m.e.pattern(w, h, GridBlock, m.p), blockAmplitudes(f, GridBlock))
	m.plane = f.Y
	return f.Y, true
}

// blockFirst is the first frame of frame i's block.
func (m *VideoMarker) blockFirst(i int) int {
	seg := 0
	if m.restart > 0 {
		seg = i / m.restart * m.restart
	}
	return seg + (i-seg)/cancelBlock*cancelBlock
}

// Mark adds the mark to f, frame index of the video (from 0), in place.
func (m *VideoMarker) Mark(ctx context.Context, f Frame, index int) error {
	if err := f.validate(MinMarkWidth, MinMarkHeight); err != nil {
		return fmt.Errorf("watermark mark frame %d: %w", index, err)
	}
	if index < 0 {
		return fmt.Errorf("watermark mark: frame index %d", index)
	}
	g := m.grid
	if g == GridBlock && blockCell(f.Width, f.Height) == 0 {
		g = GridFine
	}
	amp := blockAmplitudes(f, g)
	if g == GridBlock || cancelMax <= 1 {
		if g == GridFine {
			allocate(f, amp, nil, false)
		}
		m.e.addPattern(f, m.e.pattern(f.Width, f.Height, g, m.p), amp)
		return nil
	}
	first := m.blockFirst(index)
	b, build, err := m.block(first, index == first)
	if err != nil {
		return fmt.Errorf("watermark mark frame %d: %w", index, err)
	}
	if build {
		// The block's first frame sets the energy allocation for all its
		// frames, as it sets the pattern. The allocation's motion term
		// compares it with the previous block's first frame, within a
		// segment only, so that a resumed pass marks alike.
		var prev []float32
		if first > 0 && (m.restart == 0 || first%m.restart != 0) {
			prev, err = m.host(ctx, first-cancelBlock)
		}
		if err == nil {
			b.scale, b.host = allocate(f, amp, prev, true)
			b.pt, err = m.e.cancelPattern(f, m.p, amp)
		}
		b.err = err
		close(b.ready)
	} else {
		select {
		case <-b.ready:
		case <-ctx.Done():
			return fmt.Errorf("watermark mark frame %d: waiting for frame %d: %w", index, first, ctx.Err())
		}
	}
	if b.err != nil {
		return fmt.Errorf("watermark mark frame %d: %w", index, b.err)
	}
	if b.pt.w != f.Width || b.pt.h != f.Height {
		return fmt.Errorf("watermark mark frame %d: %dx%d in a block of %dx%d frames", index, f.Width, f.Height, b.pt.w, b.pt.h)
	}
	if !build {
		applyScales(amp, b.scale)
	}
	m.e.addPattern(f, b.pt, amp)
	return nil
}

// host is the first frame, at the detector's grid, of the block starting at
// frame first, once that block is built.
func (m *VideoMarker) host(ctx context.Context, first int) ([]float32, error) {
	b, _, err := m.block(first, false)
	if err != nil {
		return nil, fmt.Errorf("previous block: %w", err)
	}
	select {
	case <-b.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for frame %d: %w", first, ctx.Err())
	}
	if b.err != nil {
		return nil, fmt.Errorf("previous block: %w", b.err)
	}
	return b.host, nil
}

// block is the block starting at frame first, begun if new; build reports
// whether the caller, holding the block's first frame (isFirst), must build
// its pattern: only once, should that frame come twice.
func (m *VideoMarker) block(first int, isFirst bool) (b *markBlock, build bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blocks[first]
	if !ok {
		if first < m.released {
			return nil, false, fmt.Errorf("its block (from frame %d) was released: frames arrive too far out of order", first)
		}
		b = &markBlock{ready: make(chan struct{})}
		m.blocks[first] = b
		m.evict()
	}
	if isFirst && !b.claimed {
		b.claimed, build = true, true
	}
	return b, build, nil
}

// evict drops the oldest block beyond markerBlocks (under m.mu).
func (m *VideoMarker) evict() {
	if len(m.blocks) > markerBlocks {
		oldest := -1
		for f := range m.blocks {
			if oldest < 0 || f < oldest {
				oldest = f
			}
		}
		delete(m.blocks, oldest)
		m.released = oldest + 1
	}
}
