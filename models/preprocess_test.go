package models

import (
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/disintegration/imaging"
)

// opaque hides an image's concrete type, forcing the generic path.
type opaque struct{ image.Image }

func preprocess(img image.Image, p Preprocessing) []float32 {
	dst := make([]float32, p.Width*p.Height*3)
	Preprocess(img, p, dst)
	return dst
}

func TestPreprocessAlignCornersByHand(t *testing.T) {
	// 3x2 source, red channel:   0  40 200
	//                          100  60  20
	// Output 5x3: align-corners puts output x at source x*2/4 and y at y*1/2.
	src := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for i, r := range []uint8{0, 40, 200, 100, 60, 20} {
		src.SetRGBA(i%3, i/3, color.RGBA{R: r, G: 255, B: 51, A: 255})
	}
	p := Preprocessing{Width: 5, Height: 3, Scale: 1.0 / 255}
	got := preprocess(src, p)
	red := func(y, x int) float32 { return got[(y*5+x)*3] * 255 }
	for _, c := range []struct {
		y, x int
		want float32
	}{
		{0, 0, 0}, {0, 4, 200}, {2, 0, 100}, {2, 4, 20}, // corners are exact source pixels
		{0, 1, 20},  // (0, 0.5): between 0 and 40
		{1, 0, 50},  // (0.5, 0): between 0 and 100
		{1, 1, 50},  // (0.5, 0.5): (0+40+100+60)/4
		{1, 3, 80},  // (0.5, 1.5): top 120, bottom 40
		{2, 3, 40},  // (1, 1.5): between 60 and 20
		{1, 2, 50},  // (0.5, 1): between 40 and 60
		{0, 3, 120}, // (0, 1.5)
	} {
		if g := red(c.y, c.x); math.Abs(float64(g-c.want)) > 1e-4 {
			t.Errorf("red(%d,%d) = %v, want %v", c.y, c.x, g, c.want)
		}
	}
	for i := 0; i < len(got); i += 3 {
		if math.Abs(float64(got[i+1]-1)) > 1e-6 || math.Abs(float64(got[i+2]-0.2)) > 1e-6 {
			t.Fatalf("pixel %d: g,b = %v,%v, want 1,0.2", i/3, got[i+1], got[i+2])
		}
	}

	// Mean and std apply after scaling: (v/255 - 0.5) / 0.25.
	p.Mean, p.Std = []float32{0.5, 0.5, 0.5}, []float32{0.25, 0.25, 0.25}
	norm := preprocess(src, p)
	if want := float32((80.0/255 - 0.5) / 0.25); math.Abs(float64(norm[(1*5+3)*3]-want)) > 1e-5 {
		t.Errorf("normalised red(1,3) = %v, want %v", norm[(1*5+3)*3], want)
	}
}

func TestPreprocessIdentityAndSinglePixel(t *testing.T) {
	// Same size in and out: align-corners is the identity.
	src := randomNRGBA(rand.New(rand.NewPCG(1, 2)), image.Rect(0, 0, 7, 5), true)
	got := preprocess(src, Preprocessing{Width: 7, Height: 5, Scale: 1})
	for y := range 5 {
		for x := range 7 {
			c := src.NRGBAAt(x, y)
			i := (y*7 + x) * 3
			if got[i] != float32(c.R) || got[i+1] != float32(c.G) || got[i+2] != float32(c.B) {
				t.Fatalf("(%d,%d) = %v, want %v", x, y, got[i:i+3], c)
			}
		}
	}
	// A 1x1 source fills the output.
	one := image.NewGray(image.Rect(0, 0, 1, 1))
	one.Pix[0] = 9
	for i, v := range preprocess(one, Preprocessing{Width: 4, Height: 3, Scale: 1}) {
		if v != 9 {
			t.Fatalf("value %d = %v, want 9", i, v)
		}
	}
}

// TestPreprocessFastPathsMatchGeneric pins every fast path to the generic
// color.RGBAModel path, including sub-images with odd offsets.
func TestPreprocessFastPathsMatchGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := Preprocessing{Width: 31, Height: 17, Scale: 1.0 / 255}
	r := image.Rect(0, 0, 97, 61)
	sub := image.Rect(3, 5, 80, 58)

	nrgba := randomNRGBA(rng, r, false) // translucent: premultiplication must match
	rgba := image.NewRGBA(r)
	draw.Draw(rgba, r, nrgba, image.Point{}, draw.Src)
	gray := image.NewGray(r)
	for i := range gray.Pix {
		gray.Pix[i] = uint8(rng.IntN(256))
	}
	for name, img := range map[string]image.Image{
		"nrgba": nrgba, "rgba": rgba, "gray": gray,
		"nrgba sub": nrgba.SubImage(sub), "rgba sub": rgba.SubImage(sub), "gray sub": gray.SubImage(sub),
		"imaging clone": imaging.Clone(nrgba),
	} {
		if d := maxAbsDiff(preprocess(img, p), preprocess(opaque{img}, p)); d != 0 {
			t.Errorf("%s: fast path differs from generic by %v", name, d)
		}
	}
}

// TestPreprocessYCbCr checks the per-sampled-pixel conversion against
// converting the whole frame with color.YCbCrToRGB first (what draw.Draw
// does for the common ratios), for every subsampling ratio and odd offsets.
func TestPreprocessYCbCr(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	p := Preprocessing{Width: 29, Height: 23, Scale: 1.0 / 255}
	for _, ratio := range []image.YCbCrSubsampleRatio{
		image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410,
	} {
		full := image.NewYCbCr(image.Rect(1, 3, 90, 67), ratio)
		for _, b := range [][]uint8{full.Y, full.Cb, full.Cr} {
			for i := range b {
				b[i] = uint8(rng.IntN(256))
			}
		}
		for _, img := range []*image.YCbCr{full, full.SubImage(image.Rect(6, 8, 85, 60)).(*image.YCbCr)} {
			want := image.NewRGBA(img.Rect)
			for y := img.Rect.Min.Y; y < img.Rect.Max.Y; y++ {
				for x := img.Rect.Min.X; x < img.Rect.Max.X; x++ {
					ci := img.COffset(x, y)
					r, g, b := color.YCbCrToRGB(img.Y[img.YOffset(x, y)], img.Cb[ci], img.Cr[ci])
					want.SetRGBA(x, y, color.RGBA{r, g, b, 255})
				}
			}
			got := preprocess(img, p)
			if d := maxAbsDiff(got, preprocess(want, p)); d != 0 {
				t.Errorf("%v %v: differs from whole-frame conversion by %v", ratio, img.Rect, d)
			}
			// The generic path goes through 16-bit YCbCr.RGBA: at most 1/255 apart.
			if d := maxAbsDiff(got, preprocess(opaque{img}, p)); d > 1.0/255+1e-6 {
				t.Errorf("%v %v: differs from generic by %v", ratio, img.Rect, d)
			}
		}
	}
}

func TestPreprocessJPEGPhoto(t *testing.T) {
	img := loadPhoto(t, "rocket.jpg")
	if _, ok := img.(*image.YCbCr); !ok {
		t.Fatalf("rocket.jpg decoded to %T, want *image.YCbCr", img)
	}
	p := mustManifest(t, NSFWModelID).Preprocessing
	rgba := image.NewRGBA(img.Bounds())
	draw.Draw(rgba, rgba.Rect, img, img.Bounds().Min, draw.Src)
	if d := maxAbsDiff(preprocess(img, p), preprocess(rgba, p)); d != 0 {
		t.Errorf("YCbCr fast path differs from draw.Draw-to-RGBA by %v", d)
	}
}

func TestPreprocessPanics(t *testing.T) {
	p := Preprocessing{Width: 4, Height: 4, Scale: 1}
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	for name, f := range map[string]func(){
		"short dst":   func() { Preprocess(img, p, make([]float32, 47)) },
		"empty image": func() { Preprocess(image.NewRGBA(image.Rect(0, 0, 0, 3)), p, make([]float32, 48)) },
		"bad resize": func() {
			q := p
			q.Resize = "lanczos"
			Preprocess(img, q, make([]float32, 48))
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func randomNRGBA(rng *rand.Rand, r image.Rectangle, opaqueAlpha bool) *image.NRGBA {
	img := image.NewNRGBA(r)
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
		if opaqueAlpha && i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	return img
}

// TestYCbCrToRGBExact checks the written-out conversion in ycbcrRows against
// color.YCbCrToRGB for every Y'CbCr triple.
func TestYCbCrToRGBExact(t *testing.T) {
	im := image.NewYCbCr(image.Rect(0, 0, 256, 1), image.YCbCrSubsampleRatio444)
	p := Preprocessing{Width: 256, Height: 1, Scale: 1}
	dst := make([]float32, 256*3)
	for y := range im.Y {
		im.Y[y] = uint8(y)
	}
	for cb := range 256 {
		for cr := range 256 {
			for x := range 256 {
				im.Cb[x], im.Cr[x] = uint8(cb), uint8(cr)
			}
			Preprocess(im, p, dst)
			for y := range 256 {
				r, g, b := color.YCbCrToRGB(uint8(y), uint8(cb), uint8(cr))
				if dst[y*3] != float32(r) || dst[y*3+1] != float32(g) || dst[y*3+2] != float32(b) {
					t.Fatalf("Y'CbCr(%d,%d,%d) = %v, want %d,%d,%d", y, cb, cr, dst[y*3:y*3+3], r, g, b)
				}
			}
		}
	}
}
