package models

import (
	"context"
	"image"
	"math"
	"testing"

	"github.com/disintegration/imaging"
)

func TestEmbedder(t *testing.T) {
	e := newTestEmbedder(t, EmbedderModelID)
	if e.Dim() != 1024 || e.ModelID() != EmbedderModelID || e.ModelSHA256() != mustManifest(t, EmbedderModelID).SHA256 {
		t.Fatalf("Dim/ModelID/SHA256 = %d/%s/%s", e.Dim(), e.ModelID(), e.ModelSHA256())
	}
	photos := loadPhotos(t)
	// Two 80% windows at opposite corners of each photo, as in MODELS.md.
	var imgs []image.Image
	for _, p := range photos {
		b := p.Bounds()
		w, h := b.Dx()*4/5, b.Dy()*4/5
		imgs = append(imgs,
			imaging.Crop(p, image.Rect(b.Min.X, b.Min.Y, b.Min.X+w, b.Min.Y+h)),
			imaging.Crop(p, image.Rect(b.Max.X-w, b.Max.Y-h, b.Max.X, b.Max.Y)))
	}
	vecs, err := e.Embed(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vecs {
		if len(v) != 1024 {
			t.Fatalf("embedding %d has %d values", i, len(v))
		}
		if n := math.Sqrt(dot(v, v)); math.Abs(n-1) > 1e-3 {
			t.Errorf("embedding %d has L2 norm %v", i, n)
		}
	}
	// Each crop's partner crop must beat every crop of another photo.
	for i := range photos {
		a, b := vecs[2*i], vecs[2*i+1]
		same := dot(a, b)
		for j := range photos {
			if j == i {
				continue
			}
			for _, other := range vecs[2*j : 2*j+2] {
				if d := math.Max(dot(a, other), dot(b, other)); d >= same {
					t.Errorf("%s crops: partner %.3f <= %s crop %.3f", photoNames[i], same, photoNames[j], d)
				}
			}
		}
		t.Logf("%s: crop pair %.3f", photoNames[i], same)
	}
}

// The NSFW model's own embedding output is the MIT-licensed fallback.
func TestEmbedderNSFWFallback(t *testing.T) {
	e := newTestEmbedder(t, NSFWModelID)
	vecs, err := e.Embed(context.Background(), loadPhotos(t)[:2])
	if err != nil {
		t.Fatal(err)
	}
	if e.Dim() != 1280 || len(vecs[0]) != 1280 {
		t.Fatalf("Dim = %d, len = %d, want 1280", e.Dim(), len(vecs[0]))
	}
	if n := math.Sqrt(dot(vecs[1], vecs[1])); math.Abs(n-1) > 1e-3 {
		t.Errorf("L2 norm %v", n)
	}
}
