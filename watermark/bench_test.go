package watermark

import (
	"context"
	"testing"
)

func BenchmarkEmbed1080p(b *testing.B) {
	kr := testKeyring(b, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	f := naturalFrame(1920, 1080, 1)
	b.SetBytes(int64(len(f.Y)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.Mark(f, 42); err != nil { // one payload per video, as in the pipeline
			b.Fatal(err)
		}
	}
}

// BenchmarkDetect1080p is the per-frame detection cost: accumulating one
// frame plus 1/32 of a decode (one decode per 32-frame window).
func BenchmarkDetect1080p(b *testing.B) {
	kr := testKeyring(b, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	f := naturalFrame(1920, 1080, 1)
	e.Mark(f, 42)
	d := NewDetector(kr)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Add(f); err != nil {
			b.Fatal(err)
		}
		if i%32 == 31 {
			if r := d.Result(); !r.Found {
				b.Fatal("not found")
			}
			d.Reset()
		}
	}
}

func BenchmarkDetectResult(b *testing.B) {
	kr := testKeyring(b, testKeySpec)
	d := NewDetector(kr)
	d.Add(naturalFrame(1920, 1080, 1))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Result()
	}
}

// BenchmarkDetectResultAspect is a one-off detection's decision on unmarked
// input with the non-uniform resize stage (package leak).
func BenchmarkDetectResultAspect(b *testing.B) {
	kr := testKeyring(b, testKeySpec)
	d := NewDetector(kr)
	d.SearchAspect()
	d.Add(naturalFrame(1920, 1080, 1))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Result()
	}
}

// BenchmarkMarkVideo1080p is Mark through a VideoMarker, the pass's path:
// the per-frame cost with one cancelled pattern built per 32 frames.
func BenchmarkMarkVideo1080p(b *testing.B) { benchMarkVideo(b, GridFine) }

// BenchmarkMarkVideoBlock1080p is the pass's per-frame cost on GridBlock
// (screen content): one amplitude everywhere, so addUniform.
func BenchmarkMarkVideoBlock1080p(b *testing.B) { benchMarkVideo(b, GridBlock) }

func benchMarkVideo(b *testing.B, g Grid) {
	kr := testKeyring(b, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	f := naturalFrame(1920, 1080, 1)
	m := e.Video(42, g, 0)
	b.SetBytes(int64(len(f.Y)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Mark(context.Background(), f, i); err != nil {
			b.Fatal(err)
		}
	}
}
