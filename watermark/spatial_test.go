package watermark

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSpatialWeights is a detector experiment (WM_SPATIAL=1; WM_CLIP,
// WM_FRAMES, WM_ATTACKS as in TestMargin, WM_REGION the region side in
// detection samples): after the geometry is found on a window's sum, it
// estimates the mark's gain per region of the frame from the sync cells
// alone and weights each region by gain/variance before folding again
// (maximal-ratio combining over space). It prints exact windows and median
// bit SNR, plain / sync-weighted / oracle-weighted (the oracle's gain comes
// from every cell and the true codeword).
func TestSpatialWeights(t *testing.T) {
	x := startExperiment(t, "WM_SPATIAL", "Big_Buck_Bunny_1080_10s_2MB.mp4", 256)
	clip := x.clip
	region, _ := strconv.Atoi(envOr("WM_REGION", "32"))
	rend, fr := x.rendition(t)
	coded := convEncode(infoWord(x.kr.Current.Secret, x.p))
	for _, an := range strings.Fields(envOr("WM_ATTACKS", "x264-28 x265-28")) {
		a := attacked(t, x, rend, fr, an)
		var ok [3]int
		var snr [3][]float64
		tot := 0
		for s := 0; s+32 <= len(a.frames); s += 32 {
			d := NewDetector(x.kr)
			for i := s; i < s+32; i++ {
				if err := d.Add(a.luma(i)); err != nil {
					t.Fatal(err)
				}
			}
			tot++
			c := d.search(uniform)[0][0]
			rf := d.refine(0, c)
			l := d.keys[0].l
			chips := l.chips(x.p)
			for v := 0; v < 3; v++ {
				soft := rf.soft
				if v > 0 {
					soft = weightedSoft(d, l, rf, region, func(cell int) float64 {
						if v == 1 {
							return float64(l.sync[cell])
						}
						return float64(chips[cell])
					})
				}
				snr[v] = append(snr[v], bitSNR(soft, coded))
				for _, path := range listViterbi(soft, infoBits, listSize) {
					if q, tg := decodeInfo(path); tg == tag(l.secret, q) {
						if q == x.p {
							ok[v]++
						}
						break
					}
				}
			}
		}
		t.Logf("SPATIAL %s %s region %d: exact plain %d, sync-weighted %d, oracle %d of %d; median SNR %.2f / %.2f / %.2f; SNRs plain %s; sync %s",
			clip, an, region, ok[0], ok[1], ok[2], tot, median(snr[0]), median(snr[1]), median(snr[2]), fmtFloats(snr[0]), fmtFloats(snr[1]))
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// weightedSoft re-folds d's accumulated grid with one weight per region of
// region x region samples, gain/variance, the gain estimated against
// pilot(cell) (0 where a cell is no pilot) at the geometry rf.
func weightedSoft(d *Detector, l *layout, rf refined, region int, pilot func(cell int) float64) []float64 {
	n := fineBins
	bin := func(i, cnt int, z float64) int {
		u := (float64(i)+0.5-float64(cnt)/2)/z - 0.5
		b := int(math.Round(u)) % n
		if b < 0 {
			b += n
		}
		return b
	}
	cellOf := func(i, j int) int {
		bxn := bin(i, d.gw, rf.zoom)
		if rf.flip {
			bxn = n - 1 - bxn
		}
		byn := bin(j, d.gh, rf.zoom)
		cx := ((bxn-rf.bx)%n + n) % n / 2
		cy := ((byn-rf.by)%n + n) % n / 2
		return cy*tileCells + cx
	}
	rw, rh := (d.gw+region-1)/region, (d.gh+region-1)/region
	num, den := make([]float64, rw*rh), make([]float64, rw*rh)
	sum, sum2, cnt := make([]float64, rw*rh), make([]float64, rw*rh), make([]float64, rw*rh)
	for j := 0; j < d.gh; j++ {
		for i := 0; i < d.gw; i++ {
			r := (j/region)*rw + i/region
			v := float64(d.acc[j*d.gw+i])
			p := pilot(cellOf(i, j))
			num[r] += v * p
			den[r] += p * p
			sum[r] += v
			sum2[r] += v * v
			cnt[r]++
		}
	}
	w := make([]float64, rw*rh)
	for r := range w {
		if den[r] == 0 || cnt[r] < 2 {
			continue
		}
		g := num[r] / den[r]
		m := sum[r] / cnt[r]
		vr := sum2[r]/cnt[r] - m*m
		if g > 0 && vr > 0 {
			w[r] = g / vr
		}
	}
	saved := d.acc
	d.acc = make([]float32, len(saved))
	for j := 0; j < d.gh; j++ {
		for i := 0; i < d.gw; i++ {
			d.acc[j*d.gw+i] = saved[j*d.gw+i] * float32(w[(j/region)*rw+i/region])
		}
	}
	fold := d.fineFold(rf.zoom, rf.zoom)
	d.acc = saved
	if rf.flip {
		mirrorF(fold, n)
	}
	return softAt(l, fold, rf.bx, rf.by)
}
