package vectorstore

import (
	"math"
	"slices"
	"testing"
)

// The adaptive probe scans one list for a query on a centroid, both lists
// for a query between two, never more than n, n when the margin is
// negative, and every list when n covers them.
func TestProbeMargin(t *testing.T) {
	unit := func(xs ...float32) []float32 {
		var n float32
		for _, x := range xs {
			n += x * x
		}
		for i := range xs {
			xs[i] /= float32(math.Sqrt(float64(n)))
		}
		return xs
	}
	q := &quantizer{}
	q.setCentroids([][]float32{
		{0.8, 0, 0, 0, 0},
		{0, 0.8, 0, 0, 0},
		{0, 0, 0.8, 0, 0},
		{0, 0, 0, 0.8, 0},
		{0, 0, 0, 0, 0.8},
	})
	for _, c := range []struct {
		name   string
		v      []float32
		n      int
		margin float64
		want   []int
	}{
		{"on a centroid", unit(1, 0, 0, 0, 0), 4, 0.15, []int{0}},
		{"between two", unit(0, 1, 1, 0, 0), 4, 0.15, []int{1, 2}},
		{"nearer one, within the margin", unit(0, 1, 0.97, 0, 0), 4, 0.15, []int{1, 2}},
		{"nearer one, past the margin", unit(0, 1, 0.5, 0, 0), 4, 0.15, []int{1}},
		{"between all, capped", unit(1, 1, 1, 1, 1), 3, 0.15, nil},
		{"negative margin: always n", unit(1, 0, 0, 0, 0), 3, -1, nil},
		{"one list", unit(0, 1, 1, 0, 0), 1, 0.15, nil},
		{"n covers every list: all, exact", unit(1, 0, 0, 0, 0), 5, 0.15, nil},
		{"n past every list: all", unit(1, 0, 0, 0, 0), 9, 0.15, []int{0, 1, 2, 3, 4}},
	} {
		got := q.probe(c.v, c.n, c.margin)
		switch {
		case c.want != nil && !slices.Equal(got, c.want):
			t.Errorf("%s: probe = %v, want %v", c.name, got, c.want)
		case c.want == nil && len(got) != c.n:
			t.Errorf("%s: probe = %v, want %d lists", c.name, got, c.n)
		}
		if !slices.IsSorted(got) {
			t.Errorf("%s: probe = %v, not sorted", c.name, got)
		}
	}
}
