package watermark

import "fmt"

// Geometry of the mark. The frame is divided into square cells whose side is
// frameWidth/cellsFor(frameWidth) pixels, so the grid is defined relative to
// the frame and any uniform rescale keeps it aligned. Cells form periodic tiles of
// tileCells x tileCells; a crop then only shifts the tiling cyclically.
//
// The fine grid's cells are cellPx pixels wide up to cellsAcross across (so
// 10 px at 1920 wide) and at least minCellsAcross across, so a tile fits
// twice across the narrowest frame. Cells under about 8 px put the mark
// where re-encodes at CRF 35 or with H.265 wipe it out; cells much larger
// meet more of the host picture (README, "Eighth round": on the 432p clips
// 8 px cells beat 6 px at H.265 CRF 28 and 35 at the same SSIM and a lower
// bit cost; 12 px cells lost the person clip's combined attack margin). The
// detector's zoom search covers every width's grid without being told it.
const (
	cellsAcross    = 192 // the most cells across a frame: 10 px cells at 1920 wide
	minCellsAcross = 64  // the fewest
	tileCells      = 32  // tile side in cells
	tileArea       = tileCells * tileCells
	syncCells      = tileArea / 4                  // a quarter of the cells carry the keyed sync pattern
	dataCells      = tileArea - syncCells          // the rest carry coded bits, 2 or 3 cells each per tile
	_              = uint(dataCells - 2*codedBits) // compile-time check: every coded bit gets 2+ cells
)

// cellPx is the fine grid's cell side in pixels where cellsAcross does not
// bind (frames under 1536 wide): 8 px at 1280x720 and 768x432. fixedCells,
// when set, is the number of cells across at every width. Variables for the
// sweep (WM_CELL_PX, WM_CELLS).
var cellPx, fixedCells = 8, 0

// cellsFor is the number of cells across a frame of width w on the fine grid.
func cellsFor(w int) int {
	if fixedCells > 0 {
		return fixedCells
	}
	return min(cellsAcross, max(minCellsAcross, w/cellPx))
}

// Grid is how the chips are laid on the frame. The detector finds either
// without being told which: both are the same keyed tiling at different
// zooms.
type Grid uint8

const (
	// GridFine interpolates the chips bilinearly between cell centres on
	// cells of 8 px, 192 across at most (see cellsFor). It suits
	// textured, moving camera content.
	GridFine Grid = iota
	// GridBlock makes every cell a constant offset of one level over a
	// square of 16, 32 or 64 pixels (see blockCell) aligned to the codec's
	// macroblocks, so an I-frame codes it in DC coefficients. On flat
	// content (slides, code editors, flat animation) it costs a tenth to a
	// half of GridFine's bits and survives H.265 CRF 35 better; on busy
	// camera content it is worse (README, "Third round"). Frames that show
	// under 70% of a tile of 16 px cells (480x270, for one) fall back to
	// GridFine.
	GridBlock
)

func (g Grid) String() string {
	if g == GridBlock {
		return "block"
	}
	return "fine"
}

// ParseGrid reads "fine" or "block".
func ParseGrid(s string) (Grid, error) {
	switch s {
	case "fine":
		return GridFine, nil
	case "block":
		return GridBlock, nil
	}
	return 0, fmt.Errorf("watermark grid %q: want fine or block", s)
}

// blockCell is GridBlock's cell side in pixels for a w x h frame, or 0 when
// none fits. It is the largest power of two from 16 (the macroblock) up to
// blockCellCap whose tile the frame shows at least blockCover of, and whose
// zoom (cell over width/cellsAcross) stays in the detector's range after a
// crop to 77% (x1.3): 16 px from 640x360 to 540p, 32 at 720p and 1080p, 64
// at 1440p and 2160p. Larger cells cost fewer bits and survive H.265 CRF
// 35, where 16 px cells do not; unseen cells leave their coded bits erased,
// which the code's redundancy absorbs (README, "Third round" and "Fourth
// round").
func blockCell(w, h int) int {
	for b := blockCellCap; b >= 16; b /= 2 {
		t := float64(tileCells * b)
		seen := min(1, float64(w)/t) * min(1, float64(h)/t)
		if r := float64(cellsAcross*b) / float64(w); seen >= blockCover && r >= zoomMin && r*1.3 <= zoomMax {
			return b
		}
	}
	return 0
}

// BlockGridFits reports whether a w x h frame can carry GridBlock; when it
// cannot, GridBlock falls back to GridFine and a grid choice is moot.
func BlockGridFits(w, h int) bool { return blockCell(w, h) > 0 }

// blockCellCap bounds blockCell; a variable for the sweep (WM_BLOCK_CELL).
var blockCellCap = 64

// blockCover is the least share of a tile's cells a frame must show on
// GridBlock. At 0.7, 720p takes 32 px cells (a 1024 px tile, 70% of its
// rows seen): a third to under half of the bits of 16 px cells, and it
// survives H.265 CRF 35, for less margin under a deep crop. Less is not
// enough: 64 px cells at 1080p (49% seen) halve a slide's cost again but
// lose flat animation and short detections (README, "Fourth round").
const blockCover = 0.7

// cellSize is the cell side in pixels on grid g for a w x h frame.
func cellSize(w, h int, g Grid) float64 {
	if b := blockCell(w, h); g == GridBlock && b > 0 {
		return float64(b)
	}
	return float64(w) / float64(cellsFor(w))
}

// layout is the keyed assignment of tile cells: a sync chip (+-1) or one
// coded bit with a keyed sign.
type layout struct {
	sync   [tileArea]float32 // +-1 at sync cells, 0 at data cells
	bit    [tileArea]int16   // coded bit index at data cells, -1 at sync cells
	sign   [tileArea]float32 // data chip sign at data cells
	secret []byte
	keyID  string
}

func newLayout(k Key) *layout {
	l := &layout{secret: append([]byte(nil), k.Secret...), keyID: k.ID}
	// Keyed permutation of the cells (Fisher-Yates): the first syncCells are
	// sync, the rest carry coded bits in order.
	perm := make([]int, tileArea)
	for i := range perm {
		perm[i] = i
	}
	r := newPRNG(k.Secret, "lessonflow-watermark/layout/v1")
	for i := tileArea - 1; i > 0; i-- {
		j := r.intn(i + 1)
		perm[i], perm[j] = perm[j], perm[i]
	}
	for i, c := range perm {
		if i < syncCells {
			l.sync[c] = r.sign()
			l.bit[c] = -1
			continue
		}
		l.bit[c] = int16((i - syncCells) % codedBits)
		l.sign[c] = r.sign()
	}
	return l
}

// chips is the tile's chip values (+-1) for payload p.
func (l *layout) chips(p Payload) [tileArea]int8 {
	coded := convEncode(infoWord(l.secret, p))
	var c [tileArea]int8
	for i := range c {
		if l.bit[i] < 0 {
			c[i] = int8(l.sync[i])
			continue
		}
		v := int8(2*int(coded[l.bit[i]]) - 1)
		if l.sign[i] < 0 {
			v = -v
		}
		c[i] = v
	}
	return c
}
