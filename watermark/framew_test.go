package watermark

import (
	"math"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestFrameWeights is a detector experiment (WM_FRAMEW=1; WM_CLIP,
// WM_FRAMES, WM_CODEC the attack's ffmpeg codec arguments): it reads every
// frame of every 32-frame window alone at the window's geometry and prints
// the per-frame bit SNR by picture type, and each window's bit SNR summed
// plainly and with oracle per-frame weights (mean/variance of the frame's
// soft bits signed by the true codeword). Sixth round: a window reads no
// better than one of its frames, so the interference is the host picture,
// not noise that more frames average out.
func TestFrameWeights(t *testing.T) {
	x := startExperiment(t, "WM_FRAMEW", "Big_Buck_Bunny_1080_10s_2MB.mp4", 256)
	rend, fr := x.rendition(t)
	codec := strings.Fields(envOr("WM_CODEC", "-c:v libx264 -preset veryfast -crf 28 -pix_fmt yuv420p"))
	att := encode(t, decodeRaw(t, rend, "", 0), fr, codec...)
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pict_type", "-of", "csv=p=0", att).Output()
	if err != nil {
		t.Fatal(err)
	}
	types := strings.Fields(string(out))
	a := decodeRaw(t, att, "", 0)
	coded := convEncode(infoWord(x.kr.Current.Secret, x.p))
	sign := make([]float64, len(coded))
	for i, c := range coded {
		sign[i] = float64(2*int(c) - 1)
	}
	byType := map[string][]float64{}
	var gains []string
	for s := 0; s+32 <= len(a.frames); s += 32 {
		d := NewDetector(x.kr)
		for i := s; i < s+32; i++ {
			d.Add(a.luma(i))
		}
		rf := d.refine(0, d.search(uniform)[0][0])
		softs := make([][]float64, 32)
		mus, vars := make([]float64, 32), make([]float64, 32)
		for i := s; i < s+32; i++ {
			soft := frameSoft(x.kr, a.luma(i), rf)
			softs[i-s] = soft
			var m, m2 float64
			for j, v := range soft {
				u := v * sign[j]
				m += u
				m2 += u * u
			}
			m /= float64(len(soft))
			vars[i-s] = m2/float64(len(soft)) - m*m
			mus[i-s] = m
			ty := "?"
			if i < len(types) {
				ty = strings.Trim(types[i], ",")
			}
			byType[ty] = append(byType[ty], m/math.Sqrt(vars[i-s]))
		}
		sum := make([]float64, len(coded))
		wsum := make([]float64, len(coded))
		for k, soft := range softs {
			w := math.Max(mus[k], 0) / vars[k]
			for j, v := range soft {
				sum[j] += v
				wsum[j] += w * v
			}
		}
		gains = append(gains, strconv.FormatFloat(bitSNR(rf.soft, coded), 'f', 2, 64)+"/"+
			strconv.FormatFloat(bitSNR(sum, coded), 'f', 2, 64)+"->"+strconv.FormatFloat(bitSNR(wsum, coded), 'f', 2, 64))
	}
	for ty, v := range byType {
		sort.Float64s(v)
		t.Logf("FRAMEW type %s: %d frames, per-frame SNR median %.3f (p10 %.3f, p90 %.3f)", ty, len(v), v[len(v)/2], v[len(v)/10], v[len(v)*9/10])
	}
	t.Logf("FRAMEW window SNR refine/sum -> oracle-weighted: %s", strings.Join(gains, " "))
}

// frameSoft reads one frame's soft coded bits (first key) at the geometry
// of rf, found on a whole window.
func frameSoft(kr Keyring, f Frame, rf refined) []float64 {
	d, fold := frameFold(kr, f, rf)
	return softAt(d.keys[0].l, fold, rf.bx, rf.by)
}

// frameFold is one frame's half-cell fold at the geometry of rf.
func frameFold(kr Keyring, f Frame, rf refined) (*Detector, []float64) {
	d := NewDetector(kr)
	d.Add(f)
	fold := d.fineFold(rf.zoom, rf.zoom)
	if rf.flip {
		mirrorF(fold, fineBins)
	}
	return d, fold
}
