package vectorstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Coarse partitioning (IVF) of the embedded store's codes.
//
// sqlite-vec's KNN costs grow with every code it scans (selection per chunk,
// then a merge into the running top k: asg017/sqlite-vec#157), so a search
// that scans fewer codes is faster whatever the popcount costs. When the
// centre is fitted, the vectors are also clustered by k-means (on a sample)
// into up to SQLiteVecOptions.Clusters lists, and each code is stored with
// its list number as one more PARTITION KEY. A search scans only the lists
// whose centroids are nearest the query (at most SQLiteVecOptions.Probe of
// them; fewer when the query is well inside one, ProbeMargin) and rescores
// their candidates exactly, as before. The centroids are kept in
// the quantizer row, so they share its generation: codes, centre and lists
// always change together, in one transaction.
//
// A collection too small for lists of MinListSize vectors gets no centroids
// (every code in list 0), and its searches scan every code.

// kmeansIters bounds Lloyd iterations; the lists only need to be coarse.
const kmeansIters = 10

// kmeansSamplePerList is how many sampled vectors per list k-means sees.
const kmeansSamplePerList = 64

// listsFor is how many lists n vectors get.
func listsFor(n int64, maxLists, minListSize int) int {
	if maxLists < 2 || minListSize < 1 {
		return 0
	}
	l := int(min(int64(maxLists), n/int64(minListSize)))
	if l < 2 {
		return 0
	}
	return l
}

// dot is the float32 dot product, four accumulators so the loop pipelines.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// nearestList is the list whose centroid is L2-nearest v:
// argmin |v-c|² = argmax v·c - |c|²/2.
func (q *quantizer) nearestList(v []float32) int {
	if len(q.centroids) == 0 {
		return 0
	}
	best, bestS := 0, float32(math.Inf(-1))
	for i, c := range q.centroids {
		if s := dot(v, c) - q.halfNorms[i]; s > bestS {
			best, bestS = i, s
		}
	}
	return best
}

// probe returns the lists a search for v scans: the nearest, and of the
// next n-1 nearest those whose squared distance to v is within 1+margin
// times the nearest's (all n when margin < 0). When n covers every list,
// it returns them all, so that a small collection is searched whole
// (exactly). nil when the collection has no lists.
func (q *quantizer) probe(v []float32, n int, margin float64) []int {
	if len(q.centroids) == 0 {
		return nil
	}
	type scored struct {
		list int
		s    float32
	}
	all := make([]scored, len(q.centroids))
	for i, c := range q.centroids {
		all[i] = scored{i, dot(v, c) - q.halfNorms[i]}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].s > all[j].s })
	// |v-c|² = |v|² - 2s.
	vv := float64(dot(v, v))
	limit := (vv - 2*float64(all[0].s)) * (1 + margin)
	out := []int{all[0].list}
	for _, c := range all[1:min(n, len(all))] {
		if margin >= 0 && n < len(all) && vv-2*float64(c.s) > limit {
			break
		}
		out = append(out, c.list)
	}
	sort.Ints(out)
	return out
}

// setCentroids installs centroids and their precomputed half squared norms.
func (q *quantizer) setCentroids(cs [][]float32) {
	q.centroids = cs
	q.halfNorms = make([]float32, len(cs))
	for i, c := range cs {
		q.halfNorms[i] = dot(c, c) / 2
	}
}

// kmeans clusters sample into lists groups (Lloyd's algorithm, started from
// distinct random members of the sample). The seed makes refits
// reproducible.
func kmeans(sample [][]float32, lists int, seed uint64) [][]float32 {
	if lists < 2 || len(sample) < lists {
		return nil
	}
	dim := len(sample[0])
	rng := rand.New(rand.NewPCG(seed, 0x1f0))
	q := &quantizer{}
	cs := make([][]float32, lists)
	for i, j := range rng.Perm(len(sample))[:lists] {
		cs[i] = append([]float32(nil), sample[j]...)
	}
	assign := make([]int, len(sample))
	sums := make([][]float64, lists)
	for i := range sums {
		sums[i] = make([]float64, dim)
	}
	counts := make([]int, lists)
	for iter := 0; iter < kmeansIters; iter++ {
		q.setCentroids(cs)
		changed := 0
		for i, v := range sample {
			a := q.nearestList(v)
			if iter == 0 || a != assign[i] {
				changed++
			}
			assign[i] = a
		}
		if iter > 0 && changed == 0 {
			break
		}
		for i := range sums {
			clear(sums[i])
			counts[i] = 0
		}
		for i, v := range sample {
			s := sums[assign[i]]
			for d, x := range v {
				s[d] += float64(x)
			}
			counts[assign[i]]++
		}
		for i := range cs {
			if counts[i] == 0 {
				// An empty list restarts from a random member.
				copy(cs[i], sample[rng.IntN(len(sample))])
				continue
			}
			for d := range cs[i] {
				cs[i][d] = float32(sums[i][d] / float64(counts[i]))
			}
		}
	}
	return cs
}

// encodeCentroids is the blob of the quantizer's centroids column: the
// centroids' float32 values in order, little-endian.
func encodeCentroids(cs [][]float32) []byte {
	if len(cs) == 0 {
		return nil
	}
	dim := len(cs[0])
	out := make([]byte, 4*dim*len(cs))
	for i, c := range cs {
		encodeVector(out[4*dim*i:], c)
	}
	return out
}

func decodeCentroids(b []byte, dim int) ([][]float32, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b)%(4*dim) != 0 {
		return nil, fmt.Errorf("centroids blob of %d bytes is not a multiple of %d", len(b), 4*dim)
	}
	cs := make([][]float32, len(b)/(4*dim))
	for i := range cs {
		c := make([]float32, dim)
		for d := range c {
			c[d] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*(i*dim+d):]))
		}
		cs[i] = c
	}
	return cs, nil
}

// reservoir keeps a uniform random sample of at most cap vectors.
type reservoir struct {
	cap  int
	seen int
	rng  *rand.Rand
	vecs [][]float32
}

func (r *reservoir) add(v []float32) {
	r.seen++
	if len(r.vecs) < r.cap {
		r.vecs = append(r.vecs, v)
		return
	}
	if j := r.rng.IntN(r.seen); j < r.cap {
		r.vecs[j] = v
	}
}
