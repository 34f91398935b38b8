package watermark

import (
	"fmt"
	"math"
)

// Host-interference cancellation (improved spread spectrum). On busy camera
// content the detector's soft bits are limited by the host picture itself,
// not by noise: it barely changes within a 32-frame window, so summing frames
// does not average it out (README, "Sixth round"). The embedder knows the
// host, so per block of frames it reads the unmarked host the way the
// detector will, at the mark's own geometry, and boosts the cells of every
// coded bit and sync chip the host works against, by enough to cancel that
// interference (at most cancelMax times). The boosted pattern is then scaled
// back to the plain pattern's energy, so PSNR and the bit cost stay about
// the same: the energy moves to where the host hurts. Only GridFine is
// cancelled: GridBlock's one-level offsets are already at the smallest step.
const (
	cancelBlock = 32 // frames per block: one detection window
	cancelFrac  = 6  // boosted chips in 1/64
	cancelShift = 2  // their pattern's shift: chips under 4
)

// Variables so the experiments (markExperiment) can compare: cancelMax caps
// a cell's boost (1 turns cancellation off); cancelMin floors the scale of
// cells the host already helps (1: left alone); cancelLambda is the share
// of the interference cancelled; cancelNorm scales the pattern back to the
// plain energy.
var (
	cancelMax    = 3.0
	cancelMin    = 1.0
	cancelLambda = 1.0
	cancelNorm   = true
	cancelSync   = true // the sync cells too, each alone
	// cancelKeepSync leaves the sync cells at the plain amplitude; the data
	// cells alone are scaled back to their plain energy.
	cancelKeepSync = false
)

// refGeometry is where the detector's half-cell fold of an unattacked w x h
// frame puts the mark: the zoom (GridFine's cell in units of width/192) and
// the fold bins of the tile origin. The fold measures from the frame centre
// (foldBin): the tile's cell 0 starts gridW/2z bins left of it, gh/2z above.
func refGeometry(w, h int) (z float64, bx, by int) {
	z = float64(cellsAcross) / float64(cellsFor(w))
	gh := math.Round(float64(gridW) * float64(h) / float64(w))
	wrap := func(v float64) int { return ((int(math.Round(v)) % fineBins) + fineBins) % fineBins }
	return z, wrap(-float64(gridW) / (2 * z)), wrap(-gh / (2 * z))
}

// refCells is f's whitened evidence per tile cell at the reference geometry:
// what a detector reading f alone would sum into each cell.
func refCells(d *Detector, f Frame) ([tileArea]float64, error) {
	d.Reset()
	if err := d.Add(f); err != nil {
		return [tileArea]float64{}, err
	}
	z, bx, by := refGeometry(f.Width, f.Height)
	return cellSums(d.fineFold(z, z), bx, by), nil
}

// cancelPattern is the pattern for payload p on the GridFine of host's size,
// with every cell's chip scaled to cancel host's interference. amp is
// host's mask; host is left unchanged.
func (e *Embedder) cancelPattern(host Frame, p Payload, amp []int32) (*pattern, error) {
	plain := e.pattern(host.Width, host.Height, GridFine, p)
	marked := Frame{Y: make([]byte, host.Width*host.Height), Width: host.Width, Height: host.Height, Stride: host.Width}
	for y := 0; y < host.Height; y++ {
		copy(marked.Y[y*host.Width:(y+1)*host.Width], host.Y[y*host.Stride:])
	}
	e.addPattern(marked, plain, amp)
	d := NewDetector(Keyring{Current: e.key})
	h, err := refCells(d, host)
	if err != nil {
		return nil, fmt.Errorf("watermark host read: %w", err)
	}
	m, err := refCells(d, marked)
	if err != nil {
		return nil, fmt.Errorf("watermark host read: %w", err)
	}
	chips := e.l.chips(p)
	scale := cancelScales(e.l, chips, h, m)
	var c [tileArea]int32
	for i, v := range chips {
		c[i] = int32(math.Round(float64(v) * scale[i] * (1 << cancelFrac)))
	}
	pt := buildPattern(host.Width, host.Height, GridFine, &c, cancelFrac, cancelShift)
	pt.p = p
	return pt, nil
}

// cancelScales is every cell's chip scale, from the host's per-cell evidence
// h and that of the host with the plain mark, m. A coded bit's cells share
// one scale, as the detector sums them; each sync cell has its own. A scale
// is 1 plus what cancels the host's evidence against the chip, over the
// mark's own gain there (floored at a quarter of the mean gain, so a cell
// the whitening hides cannot ask for much), at most cancelMax; then all are
// scaled back to the plain pattern's energy.
func cancelScales(l *layout, chips [tileArea]int8, h, m [tileArea]float64) [tileArea]float64 {
	var hb, gb [codedBits]float64 // per coded bit, along its chips
	var gMeanSync, gMeanBit float64
	for c := range h {
		along := float64(chips[c]) // the chip's sign
		g := (m[c] - h[c]) * along
		if l.bit[c] < 0 {
			gMeanSync += math.Abs(g) / syncCells
			continue
		}
		hb[l.bit[c]] += h[c] * along
		gb[l.bit[c]] += g
	}
	for _, g := range gb {
		gMeanBit += math.Abs(g) / codedBits
	}
	boost := func(host, gain, floor float64) float64 {
		return min(cancelMax, max(cancelMin, 1-cancelLambda*host/max(gain, floor)))
	}
	var s [tileArea]float64
	var energy, cells float64 // of the cells normalized
	for c := range s {
		s[c] = 1
		if cancelMax > 1 {
			if b := l.bit[c]; b >= 0 {
				s[c] = boost(hb[b], gb[b], gMeanBit/4)
			} else if cancelSync && !cancelKeepSync {
				along := float64(chips[c])
				s[c] = boost(h[c]*along, (m[c]-h[c])*along, gMeanSync/4)
			}
		}
		if l.bit[c] >= 0 || !cancelKeepSync {
			energy += s[c] * s[c]
			cells++
		}
	}
	if k := math.Sqrt(cells / energy); k < 1 && cancelNorm {
		for c := range s {
			if l.bit[c] >= 0 || !cancelKeepSync {
				s[c] *= k
			}
		}
	}
	return s
}
