package watermark

import (
	"fmt"
	"sort"
)

// The block grid's mark is the same in every frame, which inter prediction
// carries for free where the picture stands still. Where it moves (a code
// editor scrolling, a cursor), every predicted block pays for the fixed
// pattern against the moving picture: on a dark editor at x264 medium that
// was +70% of the rendition's size, +6% with the text standing still
// (README, "Twenty-third round"). MotionGate takes the mark out of the
// squares that keep moving through a block of GateFrames frames, for that
// block only; the rest of the frame carries the mark, and the detector sums
// it over frames as before.
const (
	// GateVersion changes whenever the gate would decide differently.
	GateVersion = 1
	// GateFrames is the length of a gate block: blocks start at every
	// multiple of it, counted from the video's first frame, so that a
	// pass resumed anywhere gates alike (it reads from its block's start).
	GateFrames = cancelBlock
	gateSquare = 32  // px of the full frame: a 1080p block cell
	gateLevel  = 0.5 // mean absolute change, in levels, that counts as motion
	gatePairs  = 8   // of a block's frame pairs, for a square to be gated
	gateDilate = 1   // squares around a gated one are gated too
	// gateCap bounds the gated share of the frame: full-frame motion
	// (camera footage, animation) would otherwise lose its whole mark.
	// On Sintel a quarter gated kept every window after every attack.
	gateCap = 0.25
)

// MotionGate decides, block by block, which squares of a w x h video carry
// no mark. It reads the block's own frames, at any scale (a half-size
// decode is plenty), so the decision is a function of the block alone.
type MotionGate struct {
	w, h    int
	nx, ny  int
	fw, fh  int     // the size of the frames Add was given in this block
	col     []int32 // square column of each frame column
	row     []int32
	prev    []byte
	frames  int
	moves   []int32   // frame pairs with motion, per square
	energy  []float64 // summed mean change, per square
	sum     []int64
	samples []int64 // frame pixels per square
}

// NewMotionGate prepares the gate of a w x h video.
func NewMotionGate(w, h int) (*MotionGate, error) {
	if w < MinMarkWidth || h < MinMarkHeight || w > MaxFrameSide || h > MaxFrameSide {
		return nil, fmt.Errorf("motion gate: a %dx%d video (from %dx%d to %dx%d)", w, h, MinMarkWidth, MinMarkHeight, MaxFrameSide, MaxFrameSide)
	}
	nx, ny := (w+gateSquare-1)/gateSquare, (h+gateSquare-1)/gateSquare
	return &MotionGate{w: w, h: h, nx: nx, ny: ny, moves: make([]int32, nx*ny), energy: make([]float64, nx*ny),
		sum: make([]int64, nx*ny), samples: make([]int64, nx*ny)}, nil
}

// Add takes the block's next frame: the video's frame at any size of the
// same aspect (its squares scale with it).
func (g *MotionGate) Add(f Frame) error {
	if f.Width < 1 || f.Height < 1 || f.Width > g.w || f.Height > g.h || f.Stride < f.Width || len(f.Y) < f.Stride*(f.Height-1)+f.Width {
		return fmt.Errorf("motion gate: a %dx%d frame (stride %d, %d bytes) for a %dx%d video", f.Width, f.Height, f.Stride, len(f.Y), g.w, g.h)
	}
	if g.frames > 0 && (f.Width != g.fw || f.Height != g.fh) {
		return fmt.Errorf("motion gate: a %dx%d frame in a block of %dx%d", f.Width, f.Height, g.fw, g.fh)
	}
	if g.frames == 0 {
		g.start(f.Width, f.Height)
	}
	if g.frames > 0 {
		g.pair(f)
	}
	for y := range f.Height {
		copy(g.prev[y*f.Width:(y+1)*f.Width], f.Y[y*f.Stride:])
	}
	g.frames++
	return nil
}

func (g *MotionGate) start(fw, fh int) {
	if fw != g.fw || fh != g.fh {
		g.fw, g.fh = fw, fh
		g.col, g.row = make([]int32, fw), make([]int32, fh)
		for x := range fw {
			g.col[x] = int32(min(x*g.w/fw/gateSquare, g.nx-1))
		}
		for y := range fh {
			g.row[y] = int32(min(y*g.h/fh/gateSquare, g.ny-1))
		}
		g.prev = make([]byte, fw*fh)
		clear(g.samples)
		for y := range fh {
			for x := range fw {
				g.samples[int(g.row[y])*g.nx+int(g.col[x])]++
			}
		}
	}
	clear(g.moves)
	clear(g.energy)
}

// pair scores the change from the previous frame to f, square by square.
func (g *MotionGate) pair(f Frame) {
	clear(g.sum)
	for y := range f.Height {
		cur, prev := f.Y[y*f.Stride:y*f.Stride+f.Width], g.prev[y*f.Width:(y+1)*f.Width]
		base := int(g.row[y]) * g.nx
		for x, v := range cur {
			d := int64(v) - int64(prev[x])
			if d < 0 {
				d = -d
			}
			g.sum[base+int(g.col[x])] += d
		}
	}
	for i, s := range g.sum {
		if g.samples[i] == 0 {
			continue
		}
		m := float64(s) / float64(g.samples[i])
		g.energy[i] += m
		if m > gateLevel {
			g.moves[i]++
		}
	}
}

// Gate is a block's decision: which gateSquare squares carry no mark.
type Gate struct {
	nx, ny int
	off    []bool
}

// Share is the gated fraction of the frame's squares.
func (g Gate) Share() float64 {
	n := 0
	for _, o := range g.off {
		if o {
			n++
		}
	}
	if len(g.off) == 0 {
		return 0
	}
	return float64(n) / float64(len(g.off))
}

// Done ends the block: the squares moving in at least gatePairs of its
// frame pairs, the most moving first up to gateCap of the frame once
// dilated, and their neighbours. The next Add starts a new block.
func (g *MotionGate) Done() Gate {
	out := Gate{nx: g.nx, ny: g.ny, off: make([]bool, g.nx*g.ny)}
	defer func() { g.frames = 0 }()
	if g.frames < 2 {
		return out
	}
	var seeds []int
	for i, m := range g.moves {
		if m >= gatePairs {
			seeds = append(seeds, i)
		}
	}
	// Stable, by index on ties: the same frames always gate alike.
	sort.SliceStable(seeds, func(a, b int) bool { return g.energy[seeds[a]] > g.energy[seeds[b]] })
	side := 2*gateDilate + 1
	if limit := int(gateCap * float64(g.nx*g.ny) / float64(side*side)); len(seeds) > limit {
		seeds = seeds[:limit]
	}
	for _, i := range seeds {
		cx, cy := i%g.nx, i/g.nx
		for y := max(0, cy-gateDilate); y <= min(g.ny-1, cy+gateDilate); y++ {
			for x := max(0, cx-gateDilate); x <= min(g.nx-1, cx+gateDilate); x++ {
				out.off[y*g.nx+x] = true
			}
		}
	}
	return out
}

// GatedOffsets is Offsets with the gated squares left unmarked (128): the
// mark of a w x h block whose gate is gate. ok is false where Offsets'
// is, or when the gate is another size's.
func (m *VideoMarker) GatedOffsets(w, h int, gate Gate) (offsets []byte, ok bool) {
	nx, ny := (w+gateSquare-1)/gateSquare, (h+gateSquare-1)/gateSquare
	if gate.nx != nx || gate.ny != ny || len(gate.off) != nx*ny {
		return nil, false
	}
	plane, ok := m.offsets(w, h)
	if !ok {
		return nil, false
	}
	plane = append([]byte(nil), plane...)
	for i, o := range gate.off {
		if !o {
			continue
		}
		cx, cy := i%nx, i/nx
		x0, x1 := cx*gateSquare, min(w, (cx+1)*gateSquare)
		for y := cy * gateSquare; y < min(h, (cy+1)*gateSquare); y++ {
			row := plane[y*w+x0 : y*w+x1]
			for x := range row {
				row[x] = 128
			}
		}
	}
	return plane, true
}

// AddOffsets marks f in place with an offsets plane (Offsets, GatedOffsets):
// clip(Y + offset - 128) at every pixel, what ffmpeg's blend filter makes
// in grainmerge mode.
func AddOffsets(f Frame, offsets []byte) error {
	if err := f.validate(1, 1); err != nil {
		return fmt.Errorf("add offsets: %w", err)
	}
	if len(offsets) != f.Width*f.Height {
		return fmt.Errorf("add offsets: %d offsets for a %dx%d frame", len(offsets), f.Width, f.Height)
	}
	for y := range f.Height {
		row, off := f.Y[y*f.Stride:y*f.Stride+f.Width], offsets[y*f.Width:(y+1)*f.Width]
		for x, o := range off {
			row[x] = uint8(min(255, max(0, int(row[x])+int(o)-128)))
		}
	}
	return nil
}
