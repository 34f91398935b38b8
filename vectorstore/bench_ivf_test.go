package vectorstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/lessonflow/lessonflow/vectorstore"
)

// BenchmarkSQLiteVecProbe sweeps the most IVF lists a search scans, each
// fixed (margin -1) and adaptive (the default ProbeMargin), over the
// benchmark collection, reopened with each setting: the time of a top-10
// search for "en" and its recall@10, and of the recommender's usual search
// (k = 40, 20 excluded ids).
//
//	go test -run '^$' -bench SQLiteVecProbe -benchtime 50x ./vectorstore/
func BenchmarkSQLiteVecProbe(b *testing.B) {
	s := buildBench(b)
	ctx := context.Background()
	queries, exclude := benchQueries(20)
	lists := 0
	if info, err := s.Quantization(ctx); err == nil {
		lists = info.Lists
	}
	for _, probe := range []int{2, 4, 8, 16, max(1, lists)} {
		for _, margin := range []float64{-1, vectorstore.DefaultSQLiteVecOptions.ProbeMargin} {
			opts := vectorstore.DefaultSQLiteVecOptions
			opts.Probe, opts.ProbeMargin = probe, margin
			s2, err := vectorstore.OpenSQLiteVecOptions(benchDir, "lessons_bench_1024", benchDim, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("probe%d_of_%d_margin%g/en_top10", probe, lists, margin), func(b *testing.B) {
				i := 0
				var got [][]string
				for b.Loop() {
					hits, err := s2.Search(ctx, queries[i%len(queries)], 10, vectorstore.Filter{Language: "en"})
					if err != nil || len(hits) != 10 {
						b.Fatalf("%d hits, %v", len(hits), err)
					}
					if i < len(queries) {
						got = append(got, hitList(hits))
					}
					i++
				}
				b.ReportMetric(benchRecall(queries, got, vectorstore.Filter{Language: "en"}), "recall@10")
			})
			b.Run(fmt.Sprintf("probe%d_of_%d_margin%g/en_k40_exclude20", probe, lists, margin), func(b *testing.B) {
				i := 0
				for b.Loop() {
					if _, err := s2.Search(ctx, queries[i%len(queries)], 40, vectorstore.Filter{Language: "en", ExcludeIDs: exclude}); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			s2.Close()
		}
	}
}
