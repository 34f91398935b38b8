package watermark

import (
	"errors"
	"fmt"
	"image"
	"math"
	"math/cmplx"
	"sort"
)

// Detection grid: frames are resampled to gridW samples across (two per
// cell at zoom 1), whitened, and summed over frames. The geometric search
// then runs once on the sum.
const (
	gridW    = 2 * cellsAcross
	fineBins = 2 * tileCells // fold resolution: half cells
	zoomMin  = 0.97
	zoomMax  = 6.3   // GridBlock at 720p (4.8) after a crop to 77%
	zoomStep = 1.006 // keeps fold misalignment under half a cell at the frame edge
	// candidates: decode attempts per key and stage (false-alarm bound).
	// Every one is decoded, however weak its coarse sync peak: on busy
	// small frames (Big Buck Bunny at 640x360) the true peak is 4.7-5.6,
	// where unmarked content peaks too (around 4.3, 99th percentile 5.2),
	// while the refined bits decode (README, "Twentieth round"); a decode
	// costs about 4 ms.
	candidates  = 4
	refineSteps = 2 // fine zoom refinement: +-refineSteps steps of zoomStep^(1/4)
)

// listSize is how many decoder paths each decode attempt tag-tests
// (false-alarm bound); a variable so experiments can compare it with 1.
var listSize = 8

// Whitening; variables so the margin experiment (margin_test.go) can vary them.
var (
	hpRadius  = 2    // high-pass: minus the 5x5 local mean
	varRadius = 4    // local deviation over 9x9 samples
	varFloor  = 0.25 // luma^2: keeps flat areas from amplifying rounding noise
	clipSigma = 3.0  // robust clip of normalized samples
	sdWeight  = 1.0  // evidence weight 1/deviation^sdWeight
)

// zooms are the coarse search's zooms, zoomMin..zoomMax: zoom 1 is a cell
// of width/cellsAcross (GridFine from 1536 wide), 1.2-3 narrower frames' fine grid,
// 3.2-4.8 GridBlock's cells (32 px at 1080p and 720p, 16 at 432p); each
// stretched by up to 1.3 for a crop keeping 77% of the width.
var zooms = zoomRange(zoomMin, zoomMax)

// zoomRange is the zooms from lo to hi in steps of zoomStep.
func zoomRange(lo, hi float64) []float64 {
	var z []float64
	for k := int(math.Floor(math.Log(lo) / math.Log(zoomStep))); ; k++ {
		v := math.Pow(zoomStep, float64(k))
		if v > hi {
			break
		}
		z = append(z, v)
	}
	return z
}

// Result is the outcome of a detection.
type Result struct {
	Found   bool
	Payload Payload
	KeyID   string
	// Confidence is the agreement between the soft evidence and the decoded
	// codeword, in [0,1]: near 1 for a clean mark, lower for a damaged one.
	// It describes the evidence; the false-alarm bound comes from the tag.
	Confidence float64
	Frames     int
	// Transform is the geometry the mark was found under (zoom relative to
	// the frame width, tile shift in cells, horizontal flip).
	Transform string
	// SyncScore is the best sync correlation peak in standard deviations
	// (about 5 on unmarked content).
	SyncScore float64
}

type keyState struct {
	l            *layout
	coarse, fine []complex128 // conjugate spectra of the sync templates
}

// Detector accumulates soft evidence over frames of one video and decodes
// it on demand. Not safe for concurrent use.
type Detector struct {
	keys        []*keyState
	aspect      bool // SearchAspect
	acc         []float32
	gw, gh      int
	frames      int
	rs          *resampler
	base, blur  []float32
	tmp, sq     []float32
	fftC, fftF  *fft2
	coarseBins  []complex128
	fineBinsBuf []complex128
	foldF       []float64
}

// NewDetector prepares detection for every key of kr.
func NewDetector(kr Keyring) *Detector {
	d := &Detector{fftC: newFFT2(tileCells), fftF: newFFT2(fineBins)}
	all := kr.All
	if len(all) == 0 && kr.Current.Validate() == nil {
		all = []Key{kr.Current}
	}
	for _, k := range all {
		if k.Validate() != nil || len(d.keys) == MaxKeys {
			continue // the false-alarm bound counts on at most MaxKeys keys
		}
		l := newLayout(k)
		ks := &keyState{l: l, coarse: make([]complex128, tileArea), fine: make([]complex128, fineBins*fineBins)}
		for i, s := range l.sync {
			ks.coarse[i] = complex(float64(s), 0)
		}
		for y := 0; y < fineBins; y++ {
			for x := 0; x < fineBins; x++ {
				ks.fine[y*fineBins+x] = complex(float64(l.sync[(y/2)*tileCells+x/2]), 0)
			}
		}
		d.fftC.transform(ks.coarse, false)
		d.fftF.transform(ks.fine, false)
		for i := range ks.coarse {
			ks.coarse[i] = cmplx.Conj(ks.coarse[i])
		}
		for i := range ks.fine {
			ks.fine[i] = cmplx.Conj(ks.fine[i])
		}
		d.keys = append(d.keys, ks)
	}
	return d
}

// Reset forgets all accumulated frames.
func (d *Detector) Reset() {
	d.frames = 0
	clear(d.acc)
}

// Add accumulates one frame. Frames of one detection must share an aspect
// ratio (their size may differ).
func (d *Detector) Add(f Frame) error {
	if err := f.validate(MinDetectSide, MinDetectSide); err != nil {
		return fmt.Errorf("watermark detect: %w", err)
	}
	gh := int(math.Round(float64(gridW) * float64(f.Height) / float64(f.Width)))
	if d.frames > 0 && gh != d.gh {
		return fmt.Errorf("watermark detect: frame %dx%d has another aspect ratio than earlier frames", f.Width, f.Height)
	}
	if d.acc == nil || gh != d.gh {
		d.gw, d.gh = gridW, gh
		n := d.gw * d.gh
		d.acc = make([]float32, n)
		d.base, d.blur, d.tmp, d.sq = make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	}
	if d.rs == nil || d.rs.srcW != f.Width || d.rs.srcH != f.Height || d.rs.dstH != d.gh {
		d.rs = newResampler(f.Width, f.Height, d.gw, d.gh)
	}
	d.rs.run(f, d.base)
	d.whitenInto(d.acc)
	d.frames++
	return nil
}

// whitenInto high-passes d.base, normalizes by the local deviation, clips
// (robust to edges), and adds the result weighted by 1/deviation to dst: a
// sample's log-likelihood weight is amplitude/variance, so flat areas
// (slides, dark screens), where the host hides little, count the most.
// A brightness or contrast change scales a whole frame alike and changes
// no decision.
func (d *Detector) whitenInto(dst []float32) {
	sq := highPassVar(d.base, d.blur, d.tmp, d.sq, d.gw, d.gh)
	cs, unitWeight := float32(clipSigma), sdWeight == 1
	for i, v := range d.base {
		sd := float32(math.Sqrt(float64(sq[i]) + varFloor))
		r := v / sd
		if r > cs {
			r = cs
		} else if r < -cs {
			r = -cs
		}
		if unitWeight {
			dst[i] += r / sd
		} else {
			dst[i] += r / float32(math.Pow(float64(sd), sdWeight))
		}
	}
}

// highPassVar high-passes base (w x h) in place, minus its local mean over
// hpRadius, and returns the local variance of the result over varRadius,
// written into blur; tmp and sq are scratch. The detector whitens with it,
// and the embedder's allocation weighs regions by it.
func highPassVar(base, blur, tmp, sq []float32, w, h int) []float32 {
	boxBlur(base, blur, tmp, w, h, hpRadius)
	for i, v := range base {
		base[i] = v - blur[i]
	}
	for i, v := range base {
		tmp[i] = v * v
	}
	boxBlur(tmp, blur, sq, w, h, varRadius)
	return blur
}

type candidate struct {
	key    int
	zoom   float64
	aspect float64 // vertical zoom / horizontal zoom
	flip   bool
	score  float64
}

// uniform is the first stage's only aspect: an aspect-preserving resize.
var uniform = []float64{1}

// aspects are the second stage's (SearchAspect) vertical/horizontal zoom
// ratios: 0.72-1.39 in steps that keep the fold misaligned by under half a
// cell at the top and bottom edges, ratio 1 excluded (the first stage's).
// They cover a 16:9 frame squeezed to 4:3 (1.33) or stretched back (0.75)
// and crops of one side only.
var aspects = func() []float64 {
	const step = 1.018
	var r []float64
	for k := int(math.Floor(math.Log(0.72) / math.Log(step))); ; k++ {
		v := math.Pow(step, float64(k))
		if v > 1.39 {
			break
		}
		if k != 0 {
			r = append(r, v)
		}
	}
	return r
}()

// SearchAspect makes Result also search non-uniform resizes (aspects) when
// the uniform search finds nothing. It multiplies the search's cost by
// about 37 on unmarked input and doubles the decodes per key (the
// false-alarm bound becomes 8 * listSize * MaxKeys * 2^-40 per detection): for
// one-off detections (package leak), not for per-window scans.
func (d *Detector) SearchAspect() { d.aspect = true }

// Result decodes the evidence accumulated so far.
func (d *Detector) Result() Result {
	best := Result{Frames: d.frames}
	if d.frames == 0 || len(d.keys) == 0 {
		return best
	}
	stages := [][]float64{uniform}
	if d.aspect {
		stages = append(stages, aspects)
	}
	for _, ratios := range stages {
		for k, cs := range d.search(ratios) {
			if len(cs) > 0 && cs[0].score > best.SyncScore {
				best.SyncScore = cs[0].score
			}
			for i := 0; i < min(candidates, len(cs)); i++ {
				r := d.decode(k, cs[i])
				if r.Found {
					return r
				}
				if r.SyncScore > best.SyncScore {
					best.SyncScore = r.SyncScore
				}
			}
		}
	}
	return best
}

// search is the coarse geometric search: it folds the evidence at every
// zoom and aspect ratio into one bin per cell and correlates each fold with
// each key's sync template, both orientations. It returns every key's
// candidates, best first.
func (d *Detector) search(ratios []float64) [][]candidate {
	cands := make([][]candidate, len(d.keys))
	fold := make([]complex128, tileArea)
	spec := make([]complex128, tileArea)
	// The coarse grid: 2x2 sums, one sample per cell at zoom 1.
	cw, ch := d.gw/2, d.gh/2
	coarse := make([]float64, cw*ch)
	for j := 0; j < ch; j++ {
		r0, r1 := d.acc[2*j*d.gw:], d.acc[(2*j+1)*d.gw:]
		for i := 0; i < cw; i++ {
			coarse[j*cw+i] = float64(r0[2*i] + r0[2*i+1] + r1[2*i] + r1[2*i+1])
		}
	}
	colBin := make([]int, cw)
	rowBin := make([]int, ch)
	foldR := make([]float64, tileArea)
	for _, z := range zooms {
		for i := range colBin {
			colBin[i] = foldBin(i, cw, z, 1, tileCells)
		}
		for _, r := range ratios {
			d.searchOne(coarse, colBin, rowBin, foldR, fold, spec, z, r, cands)
		}
	}
	for _, cs := range cands {
		sort.Slice(cs, func(a, b int) bool { return cs[a].score > cs[b].score })
	}
	return cands
}

// searchOne folds the coarse grid at zoom z (columns) and z*r (rows) and
// appends every key's straight and mirrored sync scores to cands.
func (d *Detector) searchOne(coarse []float64, colBin, rowBin []int, foldR []float64, fold, spec []complex128, z, r float64, cands [][]candidate) {
	cw, ch := len(colBin), len(rowBin)
	for j := range rowBin {
		rowBin[j] = foldBin(j, ch, z*r, 1, tileCells) * tileCells
	}
	clear(foldR)
	for j := 0; j < ch; j++ {
		row := coarse[j*cw : j*cw+cw]
		fr := foldR[rowBin[j]:]
		for i, v := range row {
			fr[colBin[i]] += v
		}
	}
	// The fold as the real part, its mirror image (the flip hypothesis)
	// as the imaginary part: the templates are real, so one complex
	// correlation yields both.
	for y := 0; y < tileCells; y++ {
		for x := 0; x < tileCells; x++ {
			fold[y*tileCells+x] = complex(foldR[y*tileCells+x], foldR[y*tileCells+tileCells-1-x])
		}
	}
	copy(spec, fold)
	d.fftC.transform(spec, false)
	for k, ks := range d.keys {
		straight, flipped := d.correlate2(d.fftC, spec, ks.coarse, tileCells)
		cands[k] = append(cands[k], candidate{key: k, zoom: z, aspect: r, score: straight},
			candidate{key: k, zoom: z, aspect: r, flip: true, score: flipped})
	}
}

// foldBin maps sample i of n (samples per cell spc at zoom 1) to its tile
// bin (bins per tile nb, bins per cell nb/tileCells) at zoom z, measured from
// the frame centre so misalignment grows symmetrically to both edges.
func foldBin(i, n int, z float64, spc, nb int) int {
	binsPerCell := float64(nb) / tileCells
	u := (float64(i) + 0.5 - float64(n)/2) / (float64(spc) * z) * binsPerCell
	b := int(math.Floor(u)) % nb
	if b < 0 {
		b += nb
	}
	return b
}

// correlate multiplies a folded spectrum by a conjugate template spectrum,
// inverts, and returns the peak's z-score and position.
func (d *Detector) correlate(f *fft2, spec, conjTmpl []complex128, n int) (score float64, px, py int) {
	prod := make([]complex128, n*n)
	for i := range prod {
		prod[i] = spec[i] * conjTmpl[i]
	}
	f.transform(prod, true)
	var sum, sum2 float64
	best := math.Inf(-1)
	for i, c := range prod {
		v := real(c)
		sum += v
		sum2 += v * v
		if v > best {
			best, px, py = v, i%n, i/n
		}
	}
	m := sum / float64(len(prod))
	sd := math.Sqrt(math.Max(sum2/float64(len(prod))-m*m, 1e-30))
	return (best - m) / sd, px, py
}

// correlate2 is correlate for a packed pair: the peak z-scores of the real
// and of the imaginary part.
func (d *Detector) correlate2(f *fft2, spec, conjTmpl []complex128, n int) (re, im float64) {
	prod := make([]complex128, n*n)
	for i := range prod {
		prod[i] = spec[i] * conjTmpl[i]
	}
	f.transform(prod, true)
	var s1, s2, t1, t2 float64
	b1, b2 := math.Inf(-1), math.Inf(-1)
	for _, c := range prod {
		a, b := real(c), imag(c)
		s1 += a
		s2 += a * a
		t1 += b
		t2 += b * b
		b1 = max(b1, a)
		b2 = max(b2, b)
	}
	N := float64(len(prod))
	z := func(sum, sum2, best float64) float64 {
		m := sum / N
		return (best - m) / math.Sqrt(math.Max(sum2/N-m*m, 1e-30))
	}
	return z(s1, s2, b1), z(t1, t2, b2)
}

// decode refines a coarse candidate at half-cell resolution and decodes the
// payload, accepting it only when the keyed tag matches.
func (d *Detector) decode(k int, c candidate) Result {
	l := d.keys[k].l
	g := d.refine(k, c)
	res := Result{Frames: d.frames, SyncScore: g.score}
	var bits []byte
	var p Payload
	for _, path := range listViterbi(g.soft, infoBits, listSize) {
		if q, t := decodeInfo(path); t == tag(l.secret, q) {
			bits, p = path, q
			break
		}
	}
	if bits == nil {
		return res
	}
	coded := convEncode(bits)
	var agree, total float64
	for i, s := range g.soft {
		agree += float64(2*int(coded[i])-1) * s
		total += math.Abs(s)
	}
	res.Found, res.Payload, res.KeyID = true, p, l.keyID
	if total > 0 {
		res.Confidence = math.Max(0, agree/total)
	}
	flip := ""
	if c.flip {
		flip = " flip"
	}
	aspect := ""
	if c.aspect != 1 {
		aspect = fmt.Sprintf(" aspect %.3f", c.aspect)
	}
	res.Transform = fmt.Sprintf("zoom %.3f%s shift %.1f,%.1f cells%s", g.zoom, aspect, float64(g.bx)/2, float64(g.by)/2, flip)
	return res
}

// refined is a candidate geometry at half-cell resolution and the soft
// values of the coded bits read under it.
type refined struct {
	soft   []float64
	flip   bool
	score  float64
	zoom   float64
	bx, by int
}

// refine searches the zoom around a coarse candidate at half-cell
// resolution and reads the soft coded bits at the best sync peak.
func (d *Detector) refine(k int, c candidate) refined {
	ks := d.keys[k]
	n := fineBins
	spec := make([]complex128, n*n)
	bestScore := math.Inf(-1)
	var bestFold []float64
	var bestZ float64
	var bx, by int
	for s := -refineSteps; s <= refineSteps; s++ {
		z := c.zoom * math.Pow(zoomStep, float64(s)/4)
		fold := d.fineFold(z, z*c.aspect)
		if c.flip {
			mirrorF(fold, n)
		}
		for i, v := range fold {
			spec[i] = complex(v, 0)
		}
		d.fftF.transform(spec, false)
		score, px, py := d.correlate(d.fftF, spec, ks.fine, n)
		if score > bestScore {
			bestScore, bestFold, bestZ, bx, by = score, fold, z, px, py
		}
	}
	return refined{soft: softAt(ks.l, bestFold, bx, by), flip: c.flip, score: bestScore, zoom: bestZ, bx: bx, by: by}
}

// softAt reads the soft coded bits from a half-cell fold whose tile origin
// is at bins (bx, by).
func softAt(l *layout, fold []float64, bx, by int) []float64 {
	return softOf(l, cellSums(fold, bx, by))
}

// softOf sums per-cell evidence into the soft coded bits, by each data
// cell's bit and keyed sign.
func softOf(l *layout, cells [tileArea]float64) []float64 {
	soft := make([]float64, codedBits)
	for ci, v := range cells {
		if l.bit[ci] >= 0 {
			soft[l.bit[ci]] += float64(l.sign[ci]) * v
		}
	}
	return soft
}

// cellSums sums a half-cell fold per cell of the tile whose origin is at
// bins (bx, by).
func cellSums(fold []float64, bx, by int) [tileArea]float64 {
	n := fineBins
	var v [tileArea]float64
	for cy := 0; cy < tileCells; cy++ {
		for cx := 0; cx < tileCells; cx++ {
			var s float64
			for dy := 0; dy < 2; dy++ {
				yb := (2*cy + by + dy) % n
				for dx := 0; dx < 2; dx++ {
					s += fold[yb*n+(2*cx+bx+dx)%n]
				}
			}
			v[cy*tileCells+cx] = s
		}
	}
	return v
}

// fineFold folds the accumulated grid at zoom z into half-cell bins with
// bilinear splatting.
func (d *Detector) fineFold(zx, zy float64) []float64 {
	n := fineBins
	fold := make([]float64, n*n)
	type pos struct {
		b0, b1 int
		w0, w1 float64
	}
	axis := func(cnt int, z float64) []pos {
		p := make([]pos, cnt)
		for i := range p {
			u := (float64(i)+0.5-float64(cnt)/2)/z - 0.5
			fl := math.Floor(u)
			f := u - fl
			b := int(fl) % n
			if b < 0 {
				b += n
			}
			p[i] = pos{b, (b + 1) % n, 1 - f, f}
		}
		return p
	}
	cols, rows := axis(d.gw, zx), axis(d.gh, zy)
	for j, r := range rows {
		src := d.acc[j*d.gw : j*d.gw+d.gw]
		r0, r1 := fold[r.b0*n:r.b0*n+n], fold[r.b1*n:r.b1*n+n]
		for i, c := range cols {
			v := float64(src[i])
			a, b := v*r.w0, v*r.w1
			r0[c.b0] += a * c.w0
			r0[c.b1] += a * c.w1
			r1[c.b0] += b * c.w0
			r1[c.b1] += b * c.w1
		}
	}
	return fold
}

func mirrorF(a []float64, n int) {
	for y := 0; y < n; y++ {
		row := a[y*n : y*n+n]
		for x := 0; x < n/2; x++ {
			row[x], row[n-1-x] = row[n-1-x], row[x]
		}
	}
}

// DetectImage detects a mark in one image: its luma (BT.601) as one frame.
func DetectImage(kr Keyring, img image.Image) (Result, error) {
	if img == nil {
		return Result{}, errors.New("watermark detect: nil image")
	}
	f, err := lumaFrame(img)
	if err != nil {
		return Result{}, err
	}
	d := NewDetector(kr)
	if len(d.keys) == 0 {
		return Result{}, errNoKeys
	}
	if err := d.Add(f); err != nil {
		return Result{}, err
	}
	return d.Result(), nil
}

// lumaFrame takes the Y plane of YCbCr images (JPEG) as is, and converts
// other images with the BT.601 limited-range luma formula.
func lumaFrame(img image.Image) (Frame, error) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w < MinDetectSide || h < MinDetectSide || w > MaxFrameSide || h > MaxFrameSide {
		return Frame{}, fmt.Errorf("watermark detect: image %dx%d outside %d..%d pixels per side", w, h, MinDetectSide, MaxFrameSide)
	}
	switch m := img.(type) {
	case *image.YCbCr:
		off := m.YOffset(b.Min.X, b.Min.Y)
		return Frame{Y: m.Y[off:], Width: w, Height: h, Stride: m.YStride}, nil
	case *image.Gray:
		off := m.PixOffset(b.Min.X, b.Min.Y)
		return Frame{Y: m.Pix[off:], Width: w, Height: h, Stride: m.Stride}, nil
	}
	y := make([]byte, w*h)
	for yy := 0; yy < h; yy++ {
		for xx := 0; xx < w; xx++ {
			r, g, bl, _ := img.At(b.Min.X+xx, b.Min.Y+yy).RGBA()
			// BT.601: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, on 16-bit inputs.
			y[yy*w+xx] = byte(lumaBT601(r, g, bl))
		}
	}
	return Frame{Y: y, Width: w, Height: h, Stride: w}, nil
}

func lumaBT601(r, g, b uint32) int64 {
	// 8-bit components from 16-bit ones.
	r8, g8, b8 := int64(r>>8), int64(g>>8), int64(b>>8)
	return (66*r8+129*g8+25*b8+128)>>8 + 16
}
