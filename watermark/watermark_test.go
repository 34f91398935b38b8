package watermark

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/disintegration/imaging"
)

const testKeySpec = "k1:00112233445566778899aabbccddeeff"

func testKeyring(t testing.TB, spec string) Keyring {
	t.Helper()
	kr, err := ParseKeyring(spec)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func randomKey(r *rand.Rand, id string) Key {
	s := make([]byte, 16+r.Intn(17))
	r.Read(s)
	return Key{ID: id, Secret: s}
}

// naturalFrame is varied synthetic content: smooth gradients, a few soft
// shapes, mild grain, and a seed-dependent mix of each.
func naturalFrame(w, h int, seed int64) Frame {
	r := rand.New(rand.NewSource(seed))
	y := make([]byte, w*h)
	gx, gy, base := r.Float64()*80, r.Float64()*80, 40+r.Float64()*120
	type blob struct{ x, y, rad, v float64 }
	blobs := make([]blob, 3+r.Intn(8))
	for i := range blobs {
		blobs[i] = blob{r.Float64() * float64(w), r.Float64() * float64(h), (0.03 + 0.2*r.Float64()) * float64(w), r.Float64()*120 - 60}
	}
	grain := r.Float64() * 6
	for j := 0; j < h; j++ {
		for i := 0; i < w; i++ {
			v := base + gx*float64(i)/float64(w) + gy*float64(j)/float64(h)
			for _, b := range blobs {
				dx, dy := float64(i)-b.x, float64(j)-b.y
				if dx*dx+dy*dy < b.rad*b.rad {
					v += b.v
				}
			}
			v += grain * r.NormFloat64()
			y[j*w+i] = byte(max(0, min(255, v)))
		}
	}
	return Frame{Y: y, Width: w, Height: h, Stride: w}
}

func TestParseKeyring(t *testing.T) {
	kr, err := ParseKeyring(" new:00112233445566778899aabbccddeeff , old.1:ffeeddccbbaa99887766554433221100aa ")
	if err != nil {
		t.Fatal(err)
	}
	if kr.Current.ID != "new" || len(kr.All) != 2 || kr.All[1].ID != "old.1" || len(kr.All[1].Secret) != 17 {
		t.Fatalf("parsed %+v", kr)
	}
	for _, bad := range []struct{ in, want string }{
		{"", "empty"},
		{"k1", "no ':'"},
		{"k1:zz112233445566778899aabbccddeeff", "not hex"},
		{"k1:0011", "secret is 2 bytes"},
		{":00112233445566778899aabbccddeeff", "1-32 characters"},
		{"k 1:00112233445566778899aabbccddeeff", "only letters"},
		{"a:00112233445566778899aabbccddeeff,a:00112233445566778899aabbccddeeff", "duplicate"},
		{strings.Repeat("a:00112233445566778899aabbccddeeff,", 17), "at most 16"},
	} {
		_, err := ParseKeyring(bad.in)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseKeyring(%q) = %v, want error containing %q", bad.in, err, bad.want)
		}
	}
}

func TestParsePayload(t *testing.T) {
	p, err := ParsePayload("0123456789ABCDEF")
	if err != nil || p != 0x0123456789abcdef || p.String() != "0123456789abcdef" {
		t.Fatalf("got %v %v", p, err)
	}
	for _, bad := range []string{"", "0123", "0123456789abcdeg", "+123456789abcdef", "0x23456789abcdef", "0123456789abcdef0"} {
		if _, err := ParsePayload(bad); err == nil {
			t.Errorf("ParsePayload(%q) accepted", bad)
		}
	}
}

func TestMarkDetectSizes(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, err := NewEmbedder(kr.Current)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for _, sz := range [][3]int{{1920, 1080}, {1280, 720}, {854, 480}, {640, 360}, {720, 1280}, {1000, 1000},
		{1920, 1080, int(GridBlock)}, {1280, 720, int(GridBlock)}, {2560, 1440, int(GridBlock)}, {3840, 2160, int(GridBlock)}, {1080, 1920, int(GridBlock)},
		{960, 540, int(GridBlock)}, {768, 432, int(GridBlock)}} {
		grid := Grid(sz[2])
		p := Payload(r.Uint64())
		f := naturalFrame(sz[0], sz[1], int64(sz[0]))
		// A stride wider than the width, as decoders hand out.
		padded := Frame{Y: make([]byte, (f.Width+32)*f.Height), Width: f.Width, Height: f.Height, Stride: f.Width + 32}
		for y := 0; y < f.Height; y++ {
			copy(padded.Y[y*padded.Stride:], f.Y[y*f.Width:(y+1)*f.Width])
		}
		if err := e.MarkGrid(padded, p, grid); err != nil {
			t.Fatal(err)
		}
		d := NewDetector(kr)
		for i := 0; i < 4; i++ {
			if err := d.Add(padded); err != nil {
				t.Fatal(err)
			}
		}
		res := d.Result()
		if !res.Found || res.Payload != p || res.KeyID != "k1" || res.Frames != 4 {
			t.Errorf("%dx%d %s grid: got %+v, want payload %v", sz[0], sz[1], grid, res, p)
		}
	}
}

// slideFrame is a flat page of level v with one busy text-like band: about
// 93% of its 16x16 blocks flat, like a slide or a code editor.
func slideFrame(w, h int, v byte) Frame {
	f := Frame{Y: bytes.Repeat([]byte{v}, w*h), Width: w, Height: h, Stride: w}
	for y := h / 4; y < h/4+h/10; y++ {
		for x := w / 8; x < 7*w/8; x++ {
			if (x/3+y/5)%2 == 0 {
				f.Y[y*w+x] = 255 - v
			}
		}
	}
	return f
}

func TestKeyRotation(t *testing.T) {
	old := testKeyring(t, "old:ffeeddccbbaa99887766554433221100")
	both := testKeyring(t, "new:00112233445566778899aabbccddeeff,old:ffeeddccbbaa99887766554433221100")
	e, _ := NewEmbedder(old.Current)
	f := naturalFrame(1280, 720, 3)
	e.Mark(f, 77)
	d := NewDetector(both)
	d.Add(f)
	if r := d.Result(); !r.Found || r.Payload != 77 || r.KeyID != "old" {
		t.Fatalf("got %+v", r)
	}
}

func TestWrongKeyNotFound(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	other := testKeyring(t, "k1:ffeeddccbbaa99887766554433221100")
	e, _ := NewEmbedder(kr.Current)
	f := naturalFrame(1920, 1080, 5)
	e.Mark(f, 0xdeadbeef)
	d := NewDetector(other)
	for i := 0; i < 8; i++ {
		d.Add(f)
	}
	if r := d.Result(); r.Found {
		t.Fatalf("wrong key found %+v", r)
	}
	// The same frames with the right key: the test can fail both ways.
	d = NewDetector(kr)
	d.Add(f)
	if r := d.Result(); !r.Found || r.Payload != 0xdeadbeef {
		t.Fatalf("right key: %+v", r)
	}
}

func TestFrameValidation(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	d := NewDetector(kr)
	for _, f := range []Frame{
		{},
		{Y: make([]byte, 100), Width: 10, Height: 10, Stride: 10},
		{Y: make([]byte, 640*360-1), Width: 640, Height: 360, Stride: 640},
		{Y: make([]byte, 640*360), Width: 640, Height: 360, Stride: 600},
		{Y: make([]byte, 640*360), Width: -640, Height: 360, Stride: 640},
		{Y: make([]byte, 4000*100), Width: 4000, Height: 100, Stride: 4000},
		{Y: make([]byte, 64), Width: 1 << 20, Height: 1 << 20, Stride: 1 << 20},
	} {
		if err := e.Mark(f, 1); err == nil {
			t.Errorf("Mark accepted %dx%d stride %d len %d", f.Width, f.Height, f.Stride, len(f.Y))
		}
		if err := d.Add(f); err == nil {
			t.Errorf("Add accepted %dx%d stride %d len %d", f.Width, f.Height, f.Stride, len(f.Y))
		}
	}
	if r := d.Result(); r.Found || r.Frames != 0 {
		t.Fatalf("after rejected frames: %+v", r)
	}
	if _, err := NewEmbedder(Key{ID: "x", Secret: []byte("short")}); err == nil {
		t.Fatal("short secret accepted")
	}
	if _, err := DetectImage(Keyring{}, image.NewGray(image.Rect(0, 0, 64, 64))); err == nil {
		t.Fatal("empty keyring accepted")
	}
	// An aspect change within one detection is refused.
	d.Add(naturalFrame(640, 360, 1))
	if err := d.Add(naturalFrame(640, 480, 1)); err == nil {
		t.Fatal("aspect change accepted")
	}
}

func TestConcurrentMark(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	src := naturalFrame(1280, 720, 9)
	want := Frame{Y: append([]byte(nil), src.Y...), Width: 1280, Height: 720, Stride: 1280}
	e.Mark(want, 5)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := Frame{Y: append([]byte(nil), src.Y...), Width: 1280, Height: 720, Stride: 1280}
			e.Mark(f, 5)
			if !bytes.Equal(f.Y, want.Y) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatal("concurrent marks differ")
	}
}

// TestDetectImage: a marked frame saved as JPEG (quality 75) and PNG, then
// decoded, is found from one image.
func TestDetectImage(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	f := naturalFrame(1280, 720, 11)
	e.Mark(f, 0x42)
	img := &image.Gray{Pix: f.Y, Stride: f.Stride, Rect: image.Rect(0, 0, f.Width, f.Height)}
	for name, enc := range map[string]func(*bytes.Buffer) error{
		"jpeg": func(b *bytes.Buffer) error { return jpeg.Encode(b, img, &jpeg.Options{Quality: 75}) },
		"png":  func(b *bytes.Buffer) error { return png.Encode(b, img) },
	} {
		var buf bytes.Buffer
		if err := enc(&buf); err != nil {
			t.Fatal(err)
		}
		dec, _, err := image.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		r, err := DetectImage(kr, dec)
		if err != nil || !r.Found || r.Payload != 0x42 {
			t.Errorf("%s: %+v %v", name, r, err)
		}
	}
	// An RGBA image goes through the BT.601 conversion.
	rgba := image.NewRGBA(img.Rect)
	for i, v := range f.Y {
		rgba.Pix[4*i], rgba.Pix[4*i+1], rgba.Pix[4*i+2], rgba.Pix[4*i+3] = v, v, v, 255
	}
	if r, err := DetectImage(kr, rgba); err != nil || !r.Found || r.Payload != 0x42 {
		t.Errorf("rgba: %+v %v", r, err)
	}
	if _, err := DetectImage(kr, image.NewGray(image.Rect(0, 0, 8, 8))); err == nil {
		t.Error("8x8 image accepted")
	}
}

// TestFalseAlarms runs the full detector on at least 10,000 unmarked
// windows of varied content (synthetic scenes, noise, flat and near-flat
// frames, real video frames, frames marked under another key), each with a
// fresh random key, and requires zero identifications. The design bound is
// 4.7e-10 per detection (package doc), so any hit here is a bug.
func TestFalseAlarms(t *testing.T) {
	windows := 10000
	if testing.Short() {
		windows = 1000
	}
	real := decodeRaw(t, sharedClip(t, "car-detection.mp4"), "scale=384:216,fps=5", 0)
	bunny := decodeRaw(t, sharedClip(t, "Big_Buck_Bunny_1080_10s_2MB.mp4"), "scale=480:270,fps=5", 0)
	foreign, _ := NewEmbedder(Key{ID: "f", Secret: []byte("a foreign key, 32 bytes long....")})
	var next atomic.Int64
	var found, aspectWindows atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(windows) {
					return
				}
				r := rand.New(rand.NewSource(i))
				kr := Keyring{Current: randomKey(r, "k")}
				kr.All = []Key{kr.Current}
				d := NewDetector(kr)
				if i%100 == 0 { // the second stage too: 37x the search, so a sample
					d.SearchAspect()
					aspectWindows.Add(1)
				}
				frames := 1 + r.Intn(3)
				for k := 0; k < frames; k++ {
					var f Frame
					switch i % 6 {
					case 0, 1:
						f = naturalFrame(384, 216, r.Int63())
					case 2: // noise or flat
						f = naturalFrame(320, 180, 0)
						for j := range f.Y {
							if i%12 == 2 {
								f.Y[j] = byte(r.Intn(256))
							} else {
								f.Y[j] = byte(16 + r.Intn(3))
							}
						}
					case 3:
						f = real.luma(r.Intn(len(real.frames)))
					case 4:
						f = bunny.luma(r.Intn(len(bunny.frames)))
					case 5: // marked, but with another key
						f = naturalFrame(384, 216, r.Int63())
						foreign.Mark(f, Payload(r.Uint64()))
					}
					if err := d.Add(f); err != nil {
						t.Error(err)
						return
					}
				}
				if res := d.Result(); res.Found {
					found.Add(1)
					t.Errorf("window %d: false identification %+v", i, res)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d unmarked windows (%d with the aspect stage), %d false identifications", windows, aspectWindows.Load(), found.Load())
}

var _ = hex.EncodeToString
var _ = fmt.Sprint

// TestGridsSurviveRescale: each grid at each width family is found after a
// resize (the fine grid across widths: a 432p mark, 96 across, upscaled to
// 1080p is found at zoom 2, and a 1080p mark downscaled to 432p at zoom 1), and the block grid also after a crop keeping 80% and a
// resize: up to the far end of the zoom range (720p: 6.0).
func TestGridsSurviveRescale(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	for _, c := range []struct {
		w, h, tw, th int
		grid         Grid
		crop         float64
	}{
		{768, 432, 1920, 1080, GridFine, 1}, {1920, 1080, 768, 432, GridFine, 1},
		{1920, 1080, 640, 360, GridBlock, 1}, {1920, 1080, 640, 360, GridBlock, 0.8},
		{1280, 720, 1920, 1080, GridBlock, 1}, {1280, 720, 640, 360, GridBlock, 0.8},
		{768, 432, 1920, 1080, GridBlock, 0.9},
	} {
		f := naturalFrame(c.w, c.h, 11)
		p := Payload(uint64(c.w)<<32 | 0xabcdef)
		if err := e.MarkGrid(f, p, c.grid); err != nil {
			t.Fatal(err)
		}
		var img image.Image = &image.Gray{Pix: f.Y, Stride: f.Stride, Rect: image.Rect(0, 0, c.w, c.h)}
		if c.crop < 1 {
			img = imaging.CropCenter(img, int(float64(c.w)*c.crop), int(float64(c.h)*c.crop))
		}
		scaled := imaging.Resize(img, c.tw, c.th, imaging.Linear)
		g := image.NewGray(scaled.Bounds())
		draw.Draw(g, g.Rect, scaled, image.Point{}, draw.Src)
		res, err := DetectImage(kr, g)
		if err != nil || !res.Found || res.Payload != p {
			t.Errorf("%dx%d %s grid, crop %.0f%%, resized to %dx%d: %+v %v", c.w, c.h, c.grid, 100*c.crop, c.tw, c.th, res, err)
		}
		t.Logf("%dx%d %s crop %.0f%% -> %dx%d: %s", c.w, c.h, c.grid, 100*c.crop, c.tw, c.th, res.Transform)
	}
}

// TestBlockGridAligned: GridBlock adds one whole level, constant over
// squares of 16, 32 or 64 pixels on the macroblock grid (the largest whose
// tile the frame shows enough of), and both signs occur.
func TestBlockGridAligned(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	for _, sz := range [][3]int{{1920, 1080, 32}, {1280, 720, 32}, {3840, 2160, 64}, {2560, 1440, 64}, {1080, 1920, 16}, {960, 540, 16}, {768, 432, 16}} {
		w, h, b := sz[0], sz[1], sz[2]
		var finer bool // some pixel differs from its 2b block's corner: cells are b, not larger
		f := Frame{Y: bytes.Repeat([]byte{128}, w*h), Width: w, Height: h, Stride: w}
		if err := e.MarkGrid(f, 0x1234, GridBlock); err != nil {
			t.Fatal(err)
		}
		var plus, minus int
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := f.Y[y*w+x]
				if v != 127 && v != 129 {
					t.Fatalf("%dx%d: pixel %d,%d = %d, want 128 +- 1", w, h, x, y, v)
				}
				if v != f.Y[(y/b*b)*w+x/b*b] {
					t.Fatalf("%dx%d: pixel %d,%d differs from its %d px block's corner", w, h, x, y, b)
				}
				finer = finer || v != f.Y[(y/(2*b)*2*b)*w+x/(2*b)*2*b]
				if v > 128 {
					plus++
				} else {
					minus++
				}
			}
		}
		if !finer {
			t.Errorf("%dx%d: constant over %d px blocks, want %d px cells", w, h, 2*b, b)
		}
		if plus < w*h/3 || minus < w*h/3 {
			t.Errorf("%dx%d: %d pixels +1, %d -1: want both signs in roughly equal parts", w, h, plus, minus)
		}
	}
	// 480x270 shows under 70% of a tile of 16 px cells: the fine grid is used.
	f := Frame{Y: bytes.Repeat([]byte{128}, 480*270), Width: 480, Height: 270, Stride: 480}
	g := Frame{Y: bytes.Repeat([]byte{128}, 480*270), Width: 480, Height: 270, Stride: 480}
	_ = e.MarkGrid(f, 0x1234, GridBlock)
	_ = e.Mark(g, 0x1234)
	if !bytes.Equal(f.Y, g.Y) {
		t.Error("480x270: GridBlock should fall back to GridFine")
	}
	if BlockGridFits(480, 270) || BlockGridFits(512, 240) || !BlockGridFits(640, 360) || !BlockGridFits(1280, 720) || !BlockGridFits(1080, 1920) {
		t.Error("BlockGridFits: want false under 512x256, true from 640x360")
	}
}

// TestOffsets: on GridBlock a video's mark is one plane of offsets, and
// adding it with saturation (what ffmpeg's blend grainmerge does) gives
// Mark's frames bit for bit, near-black and near-white pixels included.
// Where the mark depends on the picture there are no offsets.
func TestOffsets(t *testing.T) {
	kr := testKeyring(t, testKeySpec)
	e, _ := NewEmbedder(kr.Current)
	r := rand.New(rand.NewSource(9))
	for _, sz := range [][2]int{{1920, 1080}, {1280, 720}, {1080, 1920}, {768, 432}, {1000, 562}} {
		w, h := sz[0], sz[1]
		m := e.Video(0xfeed, GridBlock, 100)
		off, ok := m.Offsets(w, h)
		if !ok || len(off) != w*h {
			t.Fatalf("%dx%d: offsets %d bytes, ok %t", w, h, len(off), ok)
		}
		for i, index := range []int{0, 37, 100, 263} {
			f := naturalFrame(w, h, int64(i))
			for k := range f.Y { // clipped extremes, where saturation shows
				if k%7 == 0 {
					f.Y[k] = byte(255 * r.Intn(2))
				}
			}
			want := make([]byte, len(f.Y))
			for k, v := range f.Y {
				want[k] = byte(max(0, min(255, int(v)+int(off[k])-128)))
			}
			added := Frame{Y: slices.Clone(f.Y), Width: w, Height: h, Stride: w}
			if err := AddOffsets(added, off); err != nil {
				t.Fatal(err)
			}
			if err := m.Mark(t.Context(), f, index); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f.Y, want) || !bytes.Equal(added.Y, want) {
				t.Fatalf("%dx%d frame %d: Mark (%t) or AddOffsets (%t) differs from the offsets added", w, h, index, bytes.Equal(f.Y, want), bytes.Equal(added.Y, want))
			}
		}
	}
	for _, c := range []struct {
		g    Grid
		w, h int
	}{{GridFine, 1920, 1080}, {GridBlock, 480, 270}, {GridBlock, 100, 40}} {
		if _, ok := e.Video(0xfeed, c.g, 0).Offsets(c.w, c.h); ok {
			t.Errorf("%s grid at %dx%d: offsets, want none (the mark depends on the picture or does not fit)", c.g, c.w, c.h)
		}
	}
}

// TestGridChooser: flat frames (a slide, a dark editor) choose GridBlock,
// textured ones GridFine, half-flat ones GridBlock only where the cells
// would be 32 px or more, and frames too small for a block tile always
// GridFine.
func TestGridChooser(t *testing.T) {
	repeat := func(f Frame, n int) []Frame {
		out := make([]Frame, n)
		for i := range out {
			out[i] = f
		}
		return out
	}
	flat := slideFrame
	partly := func(w, h int, busy float64) Frame { // the bottom rows textured
		f := Frame{Y: bytes.Repeat([]byte{128}, w*h), Width: w, Height: h, Stride: w}
		n := naturalFrame(w, h, 9)
		y0 := int(float64(h) * (1 - busy))
		copy(f.Y[y0*w:], n.Y[y0*n.Stride:])
		return f
	}
	ramp := func(w, h, run int) Frame { // a triangle wave across, one level every run pixels
		f := Frame{Y: make([]byte, w*h), Width: w, Height: h, Stride: w}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := x / run % 200
				if x/run/200%2 == 1 {
					v = 199 - v
				}
				f.Y[y*w+x] = byte(28 + v)
			}
		}
		return f
	}
	for _, c := range []struct {
		name     string
		frames   []Frame
		want     Grid
		decisive bool // no trial needed
	}{
		{"white slide 1080p", []Frame{flat(1920, 1080, 235), flat(1920, 1080, 235)}, GridBlock, true},
		{"dark editor 720p", []Frame{flat(1280, 720, 20)}, GridBlock, true},
		{"textured 1080p", []Frame{naturalFrame(1920, 1080, 3), naturalFrame(1920, 1080, 4)}, GridFine, false},
		{"half slide, half texture", []Frame{flat(1920, 1080, 235), naturalFrame(1920, 1080, 5), naturalFrame(1920, 1080, 6)}, GridFine, false},
		// A mixed lesson: one textured frame in ten keeps the fine grid (the
		// block grid would leave its camera part unreadable); one in twenty
		// does not.
		{"slides with 1 in 10 camera", append(repeat(flat(1920, 1080, 235), 9), naturalFrame(1920, 1080, 7)), GridFine, false},
		{"slides with 1 in 20 camera", append(repeat(flat(1920, 1080, 235), 19), naturalFrame(1920, 1080, 8)), GridBlock, true},
		// The text band covers 11% of the 16x16 blocks at 432p: the trial decides.
		{"slide 432p", []Frame{flat(768, 432, 235)}, GridBlock, false},
		// 70% flat, like a still camera's road and sky: enough for 32 px
		// cells, not for 16 px cells, and never without a trial.
		{"70% flat 1080p", []Frame{partly(1920, 1080, 0.3)}, GridBlock, false},
		{"70% flat 432p", []Frame{partly(768, 432, 0.3)}, GridFine, false},
		// 85% flat: the block grid, but as flat as camera content gets (an
		// upscaled still camera reaches 0.88), so the trial decides.
		{"85% flat 1080p", []Frame{partly(1920, 1080, 0.15)}, GridBlock, false},
		{"95% flat 1080p", []Frame{partly(1920, 1080, 0.05)}, GridBlock, true},
		{"slides, 1 in 10 at 85% flat", append(repeat(flat(1920, 1080, 235), 9), partly(1920, 1080, 0.15)), GridBlock, false},
		// Smooth is not still: a third of a level per pixel everywhere
		// (upscaled camera footage) is flat enough for the block grid, but
		// the trial decides; a ninth of a level (a gradient slide) needs
		// none.
		{"smooth 1080p, a third of a level per pixel", []Frame{ramp(1920, 1080, 3)}, GridBlock, false},
		{"gradient 1080p, a ninth of a level per pixel", []Frame{ramp(1920, 1080, 9)}, GridBlock, true},
		{"slide 480x270", []Frame{flat(480, 270, 235)}, GridFine, false},
		{"no frames", nil, GridFine, false},
	} {
		var gc GridChooser
		for _, f := range c.frames {
			if err := gc.Add(f); err != nil {
				t.Fatal(err)
			}
		}
		if got := gc.Grid(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		if got := gc.Decisive(); got != c.decisive {
			t.Errorf("%s: decisive %t, want %t", c.name, got, c.decisive)
		}
	}
	var gc GridChooser
	_ = gc.Add(flat(1920, 1080, 235))
	if err := gc.Add(flat(1280, 720, 235)); err == nil {
		t.Error("frames of two widths: want an error")
	}
	if err := gc.Add(Frame{Y: make([]byte, 10), Width: 100, Height: 100, Stride: 100}); err == nil {
		t.Error("short luma buffer: want an error")
	}
}

// TestAddPatternWords checks addPattern (eight pixels per word) against
// the per-pixel sum it replaced, d = (p*a + 2048) >> 12 on the signed
// pattern, bit for bit: every pattern value (-256..256), every amplitude
// the word path takes and beyond, pixels at both ends of the range
// (saturation), a width that leaves a partial word and a partial block,
// and a stride wider than the frame.
func TestAddPatternWords(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	const w, h, stride = 203, 70, 211
	pt := &pattern{w: w, h: h, rowOf: make([]int32, h)}
	signed := make([][]int32, h)
	for y := 0; y < h; y++ {
		mag, code := make([]byte, w), make([]byte, w)
		signed[y] = make([]int32, w)
		for x := range mag {
			p := int32(r.Intn(513) - 256)
			if r.Intn(8) == 0 {
				p = 256 * int32(1-2*r.Intn(2))
			}
			signed[y][x] = p
			if p < 0 {
				p, code[x] = -p, patNeg
			}
			if p == 256 {
				p, code[x] = 255, code[x]|patFull
			}
			mag[x] = byte(p)
		}
		pt.mag, pt.code = append(pt.mag, mag), append(pt.code, code)
		pt.rowOf[y] = int32(y)
	}
	bw, bh := (w+maskBlock-1)/maskBlock, (h+maskBlock-1)/maskBlock
	// Random amplitudes up to maxA, or every block at uniform (addUniform,
	// as on GridBlock and flat frames); shift as in a cancelled pattern.
	cases := []struct {
		maxA, uniform int32
		shift         uint8
	}{
		{maxA: maxWordAmp}, {maxA: 48}, {maxA: 1000},
		{uniform: 16}, {uniform: 0}, {uniform: 43}, {uniform: maxWordAmp}, {uniform: 1000},
		{uniform: 16, shift: 2}, {uniform: maxWordAmp, shift: 1}, {maxA: 48, shift: 2},
	}
	for _, c := range cases {
		pt.shift = c.shift
		pt.uniform.Store(nil)
		amp := make([]int32, bw*bh)
		for i := range amp {
			amp[i] = c.uniform
			if c.maxA > 0 {
				amp[i] = int32(r.Intn(int(c.maxA) + 1))
			}
		}
		if c.maxA > 0 {
			amp[0], amp[1] = 0, min(c.maxA, maxWordAmp>>c.shift)
		}
		y := make([]byte, stride*h)
		for i := range y {
			switch r.Intn(4) {
			case 0:
				y[i] = byte(r.Intn(16))
			case 1:
				y[i] = byte(255 - r.Intn(16))
			default:
				y[i] = byte(r.Intn(256))
			}
		}
		want := append([]byte(nil), y...)
		for yy := 0; yy < h; yy++ {
			for x := 0; x < w; x++ {
				a := amp[(yy/maskBlock)*bw+x/maskBlock] << c.shift
				d := (signed[yy][x]*a + 1<<11) >> 12
				want[yy*stride+x] = byte(min(max(int32(want[yy*stride+x])+d, 0), 255))
			}
		}
		(&Embedder{}).addPattern(Frame{Y: y, Width: w, Height: h, Stride: stride}, pt, amp)
		if i := firstDiff(y, want); i >= 0 {
			t.Fatalf("%+v: byte %d (x %d, y %d) is %d, want %d", c, i, i%stride, i/stride, y[i], want[i])
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
