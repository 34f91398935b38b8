package watermark

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

// Frame is the 8-bit luma plane of a yuv420p frame (limited or full range):
// row y starts at Y[y*Stride].
type Frame struct {
	Y                     []byte
	Width, Height, Stride int
}

// MarkVersion changes whenever the same frame and payload would be marked
// differently (2: 8 px fine-grid cells under 1536 wide; 3: the fine grid's
// energy allocation between regions; 4: the faster resample and box
// filters, whose float rounding can move a block's amplitude or the
// cancellation by a step; 5: the allocation's motion term). Detection reads
// every version; a resumable pass keys its partial work by it, so that one
// rendition never mixes two.
const MarkVersion = 5

// Frame size limits. Marks need cells of at least one pixel; detection takes
// anything from a thumbnail up.
const (
	MinMarkWidth   = cellsAcross
	MinMarkHeight  = 64
	MinDetectSide  = 16
	MaxFrameSide   = 8192
	maxAspectRatio = 4
)

func (f Frame) validate(minW, minH int) error {
	switch {
	case f.Width < minW || f.Height < minH:
		return fmt.Errorf("frame %dx%d is smaller than %dx%d", f.Width, f.Height, minW, minH)
	case f.Width > MaxFrameSide || f.Height > MaxFrameSide:
		return fmt.Errorf("frame %dx%d is larger than %dx%d", f.Width, f.Height, MaxFrameSide, MaxFrameSide)
	case f.Stride < f.Width:
		return fmt.Errorf("frame stride %d is less than width %d", f.Stride, f.Width)
	case f.Width > maxAspectRatio*f.Height || f.Height > maxAspectRatio*f.Width:
		return fmt.Errorf("frame %dx%d: aspect ratio beyond %d:1", f.Width, f.Height, maxAspectRatio)
	}
	need := f.Stride*(f.Height-1) + f.Width
	if f.Stride > MaxFrameSide*2 || len(f.Y) < need {
		return fmt.Errorf("frame %dx%d stride %d needs %d luma bytes, has %d", f.Width, f.Height, f.Stride, need, len(f.Y))
	}
	return nil
}

// Masking. The amplitude per 16x16 block grows with local activity (texture
// hides the mark) between a floor that keeps the mark present on flat slides
// and dark screens, and a cap. Amplitudes are peak luma levels of a cell.
// Amplitudes are tuned on the four real clips and the generated slide and
// dark-screen clips for PSNR >= 42 dB and SSIM >= 0.985 (see README). Cells
// under ampRefCell pixels (small frames) put the pattern at higher spatial
// frequencies, which SSIM penalizes more, so their amplitude shrinks.
const (
	maskBlock  = 16
	ampRefCell = 10.0 // cell size (pixels) the amplitudes are tuned for
	ampCellExp = 0.7  // amplitude scale = (cell/ampRefCell)^ampCellExp below it
)

// Variables so the tuning experiments (tune_test.go, sweep_test.go) can vary them.
var (
	ampFlat          = 2.5  // peak level on flat areas: never absent
	ampMax           = 3.0  // cap on busy texture
	ampPerAct        = 0.15 // amplitude per unit of mean absolute gradient (added in quadrature)
	blockLevel int32 = 1    // GridBlock's offset in luma levels (see blockAmplitudes)
	// ampScaleTexture applies the small-cell scale to flat blocks only,
	// fading out towards the cap (WM_SCALE_TEXTURE).
	ampScaleTexture = false
)

// Embedder marks frames with one key. Safe for concurrent use; it caches
// the pattern of the last payload and frame size only, so marking several
// videos at once through one Embedder is correct but rebuilds the pattern
// as they alternate: use one Embedder per video, as the pipeline does.
type Embedder struct {
	l   *layout
	key Key // for the reference reads of host-interference cancellation
	// last is the pattern of the last (size, grid, payload) marked: every
	// frame of a video shares it, so it is built once per video.
	last atomic.Pointer[pattern]
}

// NewEmbedder prepares the keyed layout of k.
func NewEmbedder(k Key) (*Embedder, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	return &Embedder{l: newLayout(k), key: k}, nil
}

// geometry is everything about the pattern that depends only on frame size
// and grid, computed when a video's pattern is built. The pattern is the chip grid interpolated
// bilinearly between cell centres (smooth, mostly low frequency, so it
// survives compression and scaling and barely changes local structure):
// for each column and row, the tile coordinate of the cell centre before it
// and the interpolation weight of the one after it (0..256).
type geometry struct {
	tx, ty []uint8
	wx, wy []int32
}

func newGeometry(w, h int, grid Grid) *geometry {
	cell := cellSize(w, h, grid)
	weight := interpWeight
	if grid == GridBlock && blockCell(w, h) > 0 { // constant cells, edges on the block grid
		weight = func(f float64) float64 {
			if f >= 0.5 {
				return 1
			}
			return 0
		}
	}
	axis := func(n int) ([]uint8, []int32) {
		t := make([]uint8, n)
		wt := make([]int32, n)
		for i := 0; i < n; i++ {
			u := (float64(i)+0.5)/cell - 0.5 // in cells, 0 at the first cell's centre
			c := math.Floor(u)
			t[i] = uint8(((int(c) % tileCells) + tileCells) % tileCells)
			wt[i] = int32(math.Round(256 * weight(u-c)))
		}
		return t, wt
	}
	g := &geometry{}
	g.tx, g.wx = axis(w)
	g.ty, g.wy = axis(h)
	return g
}

// interpWeight is the weight of the next cell centre at fraction f of the
// way to it. Linear: a raised cosine was measured to cost more bits at equal
// PSNR for the same robustness (README, tradeoff sweep). A variable so the
// sweep can swap it.
var interpWeight = func(f float64) float64 { return f }

// Mark adds the plain mark for payload p to f in place, on GridFine.
func (e *Embedder) Mark(f Frame, p Payload) error {
	return e.MarkGrid(f, p, GridFine)
}

// MarkGrid adds the plain mark for payload p to f in place, on grid g: the
// pattern without host-interference cancellation, for single images. Videos
// go through Video, which cancels per block of frames. Every frame of a
// video should use the same grid (GridChooser picks one): the detector sums
// frames under one geometry.
func (e *Embedder) MarkGrid(f Frame, p Payload, g Grid) error {
	if err := f.validate(MinMarkWidth, MinMarkHeight); err != nil {
		return fmt.Errorf("watermark mark: %w", err)
	}
	if g == GridBlock && blockCell(f.Width, f.Height) == 0 {
		g = GridFine
	}
	amp := blockAmplitudes(f, g)
	if g == GridFine {
		allocate(f, amp, nil, false)
	}
	e.addPattern(f, e.pattern(f.Width, f.Height, g, p), amp)
	return nil
}

// pattern is the unit-amplitude pattern of one payload on one frame size
// and grid, in 1/256 level: every distinct row once (a row is set by its
// tile row and interpolation weight, so a 1080p frame has 320 distinct rows
// on GridFine and 32 on GridBlock). At most twice a luma plane; building it
// per video instead of interpolating every pixel of every frame cut the
// embedding time by a third (BenchmarkEmbed1080p 5.0 -> 3.35 ms).
type pattern struct {
	w, h int
	grid Grid
	p    Payload
	// A row as two byte planes, so that addPattern works on eight pixels
	// per 64-bit word: the magnitude (0..255) and a code, patNeg where the
	// value is negative, patFull where its magnitude is 256 (stored 255).
	mag, code [][]byte
	rowOf     []int32 // frame row -> row index
	// uniform caches the rows' delta words at one amplitude (addUniform).
	uniform atomic.Pointer[uniformDeltas]
	// shift: values are in 2^shift/256 level, so that chips scaled up to
	// 2^shift fit a byte (cancelPattern); addPattern scales the amplitude
	// back. 0 for plain chips, which keeps their marks exact.
	shift uint8
}

func (e *Embedder) pattern(w, h int, grid Grid, p Payload) *pattern {
	if pt := e.last.Load(); pt != nil && pt.w == w && pt.h == h && pt.grid == grid && pt.p == p {
		return pt
	}
	chips := e.l.chips(p)
	var c [tileArea]int32
	for i, v := range chips {
		c[i] = int32(v)
	}
	pt := buildPattern(w, h, grid, &c, 0, 0)
	pt.p = p
	e.last.Store(pt)
	return pt
}

// buildPattern interpolates chips (in units of 2^-chipFrac) bilinearly
// between cell centres into a pattern in 2^shift/256 level, rounding half
// up. Chip magnitudes must stay under 2^shift (or be exactly 1 with shift 0).
func buildPattern(w, h int, grid Grid, chips *[tileArea]int32, chipFrac, shift uint8) *pattern {
	g := newGeometry(w, h, grid)
	// Each tile row of chips interpolated across the frame width (x256).
	lines := make([]int32, tileCells*w)
	for t := 0; t < tileCells; t++ {
		line := lines[t*w : (t+1)*w]
		row := chips[t*tileCells : (t+1)*tileCells]
		for x := range line {
			c0 := row[g.tx[x]]
			c1 := row[(int(g.tx[x])+1)%tileCells]
			line[x] = c0*(256-g.wx[x]) + c1*g.wx[x]
		}
	}
	pt := &pattern{w: w, h: h, grid: grid, rowOf: make([]int32, h), shift: shift}
	down := chipFrac + 8 + shift // the interpolated values are in 2^-(chipFrac+16) chip
	seen := make(map[int32]int32)
	for y := 0; y < h; y++ {
		t0, w1 := int(g.ty[y]), g.wy[y]
		if w1 == 256 { // the next tile row alone
			t0, w1 = (t0+1)%tileCells, 0
		}
		k := int32(t0)<<9 | w1
		if i, ok := seen[k]; ok {
			pt.rowOf[y] = i
			continue
		}
		l0 := lines[t0*w : (t0+1)*w]
		t1 := (t0 + 1) % tileCells
		l1 := lines[t1*w : (t1+1)*w]
		mag, code := make([]byte, w), make([]byte, w)
		for x := range mag {
			v := (l0[x]*(256-w1) + l1[x]*w1 + 1<<(down-1)) >> down
			if v < 0 {
				v, code[x] = -v, patNeg
			}
			if v == 256 { // a cell centre
				v, code[x] = 255, code[x]|patFull
			}
			mag[x] = byte(v)
		}
		seen[k] = int32(len(pt.mag))
		pt.rowOf[y] = int32(len(pt.mag))
		pt.mag, pt.code = append(pt.mag, mag), append(pt.code, code)
	}
	return pt
}

// Pattern codes (pattern.code).
const (
	patFull = 0x01
	patNeg  = 0x80
)

// addPattern adds pt with per-block amplitudes (the mask, 1/16 level) to f:
// per pixel d = (p*a + 2048) >> 12 levels (p the pattern in 1/256 level),
// saturated. It works on eight pixels per 64-bit word (SWAR): the pattern
// is most of the marking time, and Go does not vectorize the per-pixel loop.
func (e *Embedder) addPattern(f Frame, pt *pattern, amp []int32) {
	if a, ok := uniformAmp(amp); ok && a >= 0 && a<<pt.shift <= maxWordAmp {
		addUniform(f, pt, a)
		return
	}
	bw := (f.Width + maskBlock - 1) / maskBlock
	for y := 0; y < f.Height; y++ {
		r := pt.rowOf[y]
		mrow, crow := pt.mag[r][:f.Width], pt.code[r][:f.Width]
		row := f.Y[y*f.Stride : y*f.Stride+f.Width]
		arow := amp[(y/maskBlock)*bw : (y/maskBlock)*bw+bw]
		for bx, a := range arow {
			a <<= pt.shift
			x0 := bx * maskBlock
			x1 := min(x0+maskBlock, f.Width)
			x := x0
			if a >= 0 && a <= maxWordAmp {
				for ; x+8 <= x1; x += 8 {
					d, neg := wordDeltas(binary.LittleEndian.Uint64(mrow[x:]), binary.LittleEndian.Uint64(crow[x:]), uint64(a))
					v := binary.LittleEndian.Uint64(row[x:])
					binary.LittleEndian.PutUint64(row[x:], ^addSat(^addSat(v, d&^neg), d&neg))
				}
			}
			for ; x < x1; x++ {
				addPixel(row, mrow, crow, x, a)
			}
		}
	}
}

// uniformAmp reports whether every block has the same amplitude, as on
// GridBlock and on flat frames: then addUniform applies it.
func uniformAmp(amp []int32) (int32, bool) {
	if len(amp) == 0 {
		return 0, false
	}
	for _, a := range amp[1:] {
		if a != amp[0] {
			return 0, false
		}
	}
	return amp[0], true
}

// uniformDeltas are a pattern's rows at amplitude amp as words of eight
// per-pixel deltas, the positive and the negative ones apart.
type uniformDeltas struct {
	amp      int32
	pos, neg [][]uint64
}

// addUniform is addPattern with amplitude a on every block, bit for bit:
// the deltas of every distinct row are computed once per pattern, so a
// pixel costs two saturating byte adds instead of the multiplications of
// wordDeltas. It more than halves the marking of screen content (README,
// "Eleventh round").
func addUniform(f Frame, pt *pattern, a int32) {
	u := pt.uniform.Load()
	if u == nil || u.amp != a {
		u = &uniformDeltas{amp: a, pos: make([][]uint64, len(pt.mag)), neg: make([][]uint64, len(pt.mag))}
		for r := range pt.mag {
			u.pos[r], u.neg[r] = make([]uint64, pt.w/8), make([]uint64, pt.w/8)
			for k := range u.pos[r] {
				d, neg := wordDeltas(binary.LittleEndian.Uint64(pt.mag[r][8*k:]), binary.LittleEndian.Uint64(pt.code[r][8*k:]), uint64(a<<pt.shift))
				u.pos[r][k], u.neg[r][k] = d&^neg, d&neg
			}
		}
		pt.uniform.Store(u) // racing builders store equal tables
	}
	words := f.Width / 8
	for y := 0; y < f.Height; y++ {
		r := pt.rowOf[y]
		row := f.Y[y*f.Stride : y*f.Stride+f.Width]
		pos, neg := u.pos[r][:words], u.neg[r][:words]
		for k := range pos {
			v := binary.LittleEndian.Uint64(row[8*k:])
			binary.LittleEndian.PutUint64(row[8*k:], ^addSat(^addSat(v, pos[k]), neg[k]))
		}
		mrow, crow := pt.mag[r], pt.code[r]
		for x := 8 * words; x < f.Width; x++ {
			addPixel(row, mrow, crow, x, a<<pt.shift)
		}
	}
}

// addPixel is one pixel of addPattern at amplitude a (already shifted).
func addPixel(row, mrow, crow []byte, x int, a int32) {
	m := int32(mrow[x]) + int32(crow[x]&patFull)
	if crow[x]&patNeg != 0 {
		row[x] = byte(max(int32(row[x])-(m*a+1<<11-1)>>12, 0))
	} else {
		row[x] = byte(min(int32(row[x])+(m*a+1<<11)>>12, 255))
	}
}

// maxWordAmp is the largest amplitude (1/16 level) wordDeltas takes: a
// 16-bit lane holds 256*a + 2048.
const maxWordAmp = (1<<16 - 1 - 1<<11) / 256

// wordDeltas is the per-pixel |d| of eight pixels (magnitude and code
// bytes) at amplitude a, as eight bytes (each at most 15), in two passes of
// four 16-bit lanes, and the mask of the negative ones. A negative p rounds
// as the arithmetic shift does: -((|p|*a + 2047) >> 12).
func wordDeltas(mag, code, a uint64) (d, neg uint64) {
	const lanes, ones, round, low4 = 0x00ff00ff00ff00ff, 0x0001000100010001, 0x0800080008000800, 0x000f000f000f000f
	const bytes = ones | ones<<8                        // bit 0 of every byte
	full, negBit := code&(bytes*patFull), code>>7&bytes // patFull is bit 0, patNeg bit 7
	even := ((mag&lanes+full&ones)*a + round - negBit&ones) >> 12 & low4
	odd := ((mag>>8&lanes+full>>8&ones)*a + round - negBit>>8&ones) >> 12 & low4
	return even | odd<<8, negBit * 0xff
}

// addSat adds the bytes of d (each under 128) to those of v, saturating at
// 255. Subtraction is ^addSat(^v, d).
func addSat(v, d uint64) uint64 {
	const high, low7 = 0x8080808080808080, 0x7f7f7f7f7f7f7f7f
	s := (v & low7) + d // per byte at most 127+127: no carry into the next
	carry := s & v & high
	return s ^ (v & high) | (carry>>7)*0xff
}

// blockAmplitudes is the mask for grid g: per 16x16 block, the amplitude in
// 1/16 luma levels. On GridFine it grows with the block's mean absolute
// gradient. GridBlock's offsets are whole levels over whole blocks, and
// one level everywhere is the operating point: two levels on textured
// blocks cost the dark editor 10 more kbps (+55% instead of +38% on 16 px
// cells) for the same bit SNR (README, "Third round"), and one level over
// a 32 px cell already survives H.265 CRF 35.
func blockAmplitudes(f Frame, g Grid) []int32 {
	bw, bh := (f.Width+maskBlock-1)/maskBlock, (f.Height+maskBlock-1)/maskBlock
	amp := make([]int32, bw*bh)
	if g == GridBlock {
		for i := range amp {
			amp[i] = 16 * blockLevel
		}
		return amp
	}
	scale := min(1, math.Pow(float64(f.Width)/float64(cellsFor(f.Width))/ampRefCell, ampCellExp))
	for by := 0; by < bh; by++ {
		for bx := 0; bx < bw; bx++ {
			act := blockActivity(f, bx, by)
			a := min(ampMax, math.Sqrt(ampFlat*ampFlat+ampPerAct*ampPerAct*act*act))
			if ampScaleTexture && ampMax > ampFlat { // the small-cell penalty fades out with texture
				t := (a - ampFlat) / (ampMax - ampFlat)
				a *= scale + (1-scale)*t
			} else {
				a *= scale
			}
			amp[by*bw+bx] = int32(a*16 + 0.5)
		}
	}
	return amp
}

// blockActivity is the mean absolute gradient of 16x16 block (bx, by),
// sampled on every fourth row and second column: plenty for a masking
// decision.
func blockActivity(f Frame, bx, by int) float64 {
	y0, x0 := by*maskBlock, bx*maskBlock
	y1, x1 := min(y0+maskBlock, f.Height-1), min(x0+maskBlock, f.Width-1)
	var sum, n int32
	for y := y0 + 1; y < y1; y += 4 {
		r := f.Y[y*f.Stride:]
		r2 := f.Y[(y+1)*f.Stride:]
		for x := x0; x < x1; x += 2 {
			sum += abs32(int32(r[x+1])-int32(r[x])) + abs32(int32(r2[x])-int32(r[x]))
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return float64(sum) / float64(n)
}

// GridChooser picks a video's grid from a sample of its frames (a few
// dozen keyframes spread over the video are plenty): GridBlock when nearly
// every sampled frame (all but one in twenty) is flat, that is at least half
// of its 16x16 blocks have a mean gradient under one level; GridFine
// otherwise. The rule leans to GridFine on purpose: the fine grid on flat
// content costs bits but is found, while the block grid on busy camera
// content is not found at all (Big Buck Bunny: bit SNR 0.05), so the camera
// part of a mixed lesson must not be marked on it. Measured flat shares per
// frame: the generated slide 0.93-0.94, dark editor 0.96-0.97, Sintel
// 0.68-0.87, Big Buck Bunny 0.01-0.02.
//
// Frames whose block cells are 16 px (640x360 to 540p) must be flatter: at
// least gridFlatShareSmall of their blocks. 16 px cells win on screen
// content (a 432p slide 0.90 and dark editor 0.95 flat: a fifth to under a
// third of the fine grid's bits, and H.265 CRF 28 survived) but lose on the
// 432p traffic camera clip, whose frames are 0.46-0.90 flat (crop 90%: 6/11
// windows instead of 11/11; README, "Fourth round"). The zero value is
// ready; not safe for concurrent use.
//
// Decisive tells when the keyframes settle the choice without a trial
// encode: nearly every frame has at least gridDecisiveShare of its blocks
// still, under gridDecisiveActivity levels of mean gradient. Screen
// content is flat to the level (its backgrounds are constant); camera
// footage upscaled is smooth, not still: under one level it looked as flat
// as a slide (a 432p camera clip upscaled to 1080p, 0.85-0.96, where the
// trial picks the fine grid), under a quarter level it measures at most
// 0.78, against 0.91-1.0 for generated slides and editors from 540p up, a
// gradient slide and SMPTE bars. On every screen clip measured the block
// grid cost a fifth to three fifths of the fine grid's bits in the trial
// (README, "Tenth round" and "Eleventh round").
type GridChooser struct {
	flatFrames     int // frames that pass the flatness test
	decisiveFrames int // frames with at least gridDecisiveShare still blocks
	frames         int
	width, height  int
}

// The flatness test above: gridFlatActivity levels of mean gradient per
// block, gridFlatShare (gridFlatShareSmall on 16 px cells) of a frame's
// blocks, gridFlatFrames of the frames; for Decisive, gridDecisiveShare of
// the blocks under gridDecisiveActivity.
const (
	gridFlatActivity     = 1.0
	gridFlatShare        = 0.5
	gridFlatShareSmall   = 0.85
	gridFlatFrames       = 0.95
	gridDecisiveShare    = 0.90
	gridDecisiveActivity = 0.25
)

// Add measures one frame. Frames of another size than the first are an error.
func (c *GridChooser) Add(f Frame) error {
	if err := f.validate(MinDetectSide, MinDetectSide); err != nil {
		return fmt.Errorf("watermark grid choice: %w", err)
	}
	if c.frames > 0 && (f.Width != c.width || f.Height != c.height) {
		return fmt.Errorf("watermark grid choice: frame %dx%d after frames %dx%d", f.Width, f.Height, c.width, c.height)
	}
	c.width, c.height = f.Width, f.Height
	bw, bh := (f.Width+maskBlock-1)/maskBlock, (f.Height+maskBlock-1)/maskBlock
	flat, still := 0, 0
	for by := 0; by < bh; by++ {
		for bx := 0; bx < bw; bx++ {
			a := blockActivity(f, bx, by)
			if a < gridFlatActivity {
				flat++
			}
			if a < gridDecisiveActivity {
				still++
			}
		}
	}
	share := gridFlatShare
	if blockCell(f.Width, f.Height) < 32 {
		share = gridFlatShareSmall
	}
	if float64(flat) >= share*float64(bw*bh) {
		c.flatFrames++
	}
	if float64(still) >= gridDecisiveShare*float64(bw*bh) {
		c.decisiveFrames++
	}
	c.frames++
	return nil
}

// Decisive reports whether Grid is GridBlock by such a margin that a
// trial encode could only confirm it.
func (c *GridChooser) Decisive() bool {
	return c.Grid() == GridBlock && float64(c.decisiveFrames) >= gridFlatFrames*float64(c.frames)
}

// Grid is the choice for the frames added so far (GridFine for none).
func (c *GridChooser) Grid() Grid {
	if c.frames == 0 || blockCell(c.width, c.height) == 0 || float64(c.flatFrames) < gridFlatFrames*float64(c.frames) {
		return GridFine
	}
	return GridBlock
}

// abs32 is branch-free: the sign of a gradient on camera noise is a coin toss
// for the branch predictor (a few percent of Mark, within noise).
func abs32(v int32) int32 {
	m := v >> 31
	return (v ^ m) - m
}

var errNoKeys = errors.New("watermark: keyring has no keys")
