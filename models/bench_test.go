package models

import (
	"context"
	"image"
	"testing"
)

// Both Batch8 benchmarks run the same 8 images (the 4 photos twice), so
// ns/image of Classify minus RunPreprocessed is the pipeline's own cost.

func benchImages(b *testing.B) []image.Image {
	photos := loadPhotos(b)
	return append(photos, photos...)
}

func BenchmarkClassifyBatch8(b *testing.B) {
	c := newTestClassifier(b, Options{BatchSize: 8})
	imgs := benchImages(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Classify(ctx, imgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(imgs)), "ns/image")
}

func BenchmarkRunPreprocessedBatch8(b *testing.B) {
	c := newTestClassifier(b, Options{BatchSize: 8})
	imgs := benchImages(b)
	batch := preprocessBatch(b, imgs)
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.RunPreprocessed(batch, len(imgs)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(imgs)), "ns/image")
}

func BenchmarkPreprocess(b *testing.B) {
	p := mustManifest(b, NSFWModelID).Preprocessing
	dst := make([]float32, p.Width*p.Height*3)
	frame := image.NewYCbCr(image.Rect(0, 0, 1920, 1080), image.YCbCrSubsampleRatio420)
	cases := []struct {
		name string
		img  image.Image
	}{
		{"rocket.jpg_YCbCr", loadPhoto(b, "rocket.jpg")},
		{"astronaut.png_RGBA", loadPhoto(b, "astronaut.png")},
		{"YCbCr420_1920x1080", frame},
		{"generic_astronaut", opaque{loadPhoto(b, "astronaut.png")}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Preprocess(c.img, p, dst)
			}
		})
	}
}
