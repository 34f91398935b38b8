package watermark

import (
	"bytes"
	"image"
	_ "image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

// FuzzDetectFrame: arbitrary bytes and geometry never panic the detector or
// the grid chooser; accepted frames give a result.
func FuzzDetectFrame(f *testing.F) {
	fr := naturalFrame(320, 180, 1)
	e, _ := NewEmbedder(testKeyring(f, testKeySpec).Current)
	big := naturalFrame(640, 360, 2)
	e.Mark(big, 9)
	f.Add(fr.Y, 320, 180, 320)
	f.Add(big.Y, 640, 360, 640)
	f.Add([]byte{1, 2, 3}, 1, 3, 1)
	f.Add([]byte{}, 0, 0, 0)
	f.Add(make([]byte, 64*64), 64, 64, -64)
	f.Add(make([]byte, 100), 1<<30, 1<<30, 1<<30)
	kr := testKeyring(f, testKeySpec)
	f.Fuzz(func(t *testing.T, y []byte, w, h, stride int) {
		// The grid choice reads the same decoded frames as the mark.
		var gc GridChooser
		if gc.Add(Frame{Y: y, Width: w, Height: h, Stride: stride}) == nil && gc.Grid() == GridBlock && !BlockGridFits(w, h) {
			t.Fatalf("%dx%d: block grid chosen where it does not fit", w, h)
		}
		d := NewDetector(kr)
		if err := d.Add(Frame{Y: y, Width: w, Height: h, Stride: stride}); err != nil {
			return
		}
		if r := d.Result(); r.Frames != 1 {
			t.Fatalf("frames %d", r.Frames)
		}
	})
}

// FuzzDetectImage: arbitrary image bytes, decoded with image.Decode, never
// panic the detector. Sizes are checked with DecodeConfig first, as callers
// must, so the fuzzer does not spend its memory on giant images.
func FuzzDetectImage(f *testing.F) {
	fr := naturalFrame(320, 180, 1)
	img := &image.Gray{Pix: fr.Y, Stride: fr.Stride, Rect: image.Rect(0, 0, fr.Width, fr.Height)}
	var pb, jb bytes.Buffer
	png.Encode(&pb, img)
	jpeg.Encode(&jb, img, nil)
	f.Add(pb.Bytes())
	f.Add(jb.Bytes())
	f.Add([]byte("GIF89a"))
	f.Add([]byte("not an image"))
	kr := testKeyring(f, testKeySpec)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil || cfg.Width*cfg.Height > 4<<20 || cfg.Width > MaxFrameSide || cfg.Height > MaxFrameSide {
			return
		}
		m, _, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		if _, err := DetectImage(kr, m); err != nil {
			return
		}
	})
}

func FuzzParseKeyring(f *testing.F) {
	f.Add("k1:00112233445566778899aabbccddeeff")
	f.Add("a:00112233445566778899aabbccddeeff,b:ffeeddccbbaa99887766554433221100")
	f.Add(":,:")
	f.Add("k1:0g")
	f.Fuzz(func(t *testing.T, s string) {
		kr, err := ParseKeyring(s)
		if err != nil {
			return
		}
		if len(kr.All) == 0 || kr.Current.ID != kr.All[0].ID {
			t.Fatalf("inconsistent keyring %+v", kr)
		}
		for _, k := range kr.All {
			if k.Validate() != nil {
				t.Fatalf("invalid key accepted: %q", k.ID)
			}
		}
	})
}

func FuzzParsePayload(f *testing.F) {
	f.Add("0123456789abcdef")
	f.Add("FFFFFFFFFFFFFFFF")
	f.Add("-123456789abcdef")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePayload(s)
		if err != nil {
			return
		}
		q, err := ParsePayload(p.String())
		if err != nil || q != p || len(p.String()) != 16 {
			t.Fatalf("round trip %q -> %v -> %v %v", s, p, q, err)
		}
	})
}
