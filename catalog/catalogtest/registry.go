package catalogtest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
)

// registryTests are the Registry contract, run by Run: every catalog.Store
// backend must also be a Registry (the watermark pass and detection use it).
var registryTests = []storeTest[catalog.Store]{
	{"WatermarkRegisterIdempotent", as(testRegisterIdempotent)},
	{"WatermarkRegisterInvalid", as(testRegisterInvalid)},
	{"WatermarkRegisterConcurrent", as(testRegisterConcurrent)},
	{"WatermarkIDsUnique", as(testWatermarkIDsUnique)},
	{"Rendition", as(testRendition)},
}

func testRegisterIdempotent(t *testing.T, s catalog.Store, r catalog.Registry) {
	create(t, s, sampleVideo("v1"))
	rec, err := r.RegisterWatermark(ctx, "v1", "teacher-1", "k1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID == 0 || rec.VideoID != "v1" || rec.TeacherID != "teacher-1" || rec.KeyID != "k1" || rec.CreatedAt.IsZero() {
		t.Fatalf("RegisterWatermark = %+v", rec)
	}
	// A retry, even with other arguments (a key rotated meanwhile), gets the first record.
	again, err := r.RegisterWatermark(ctx, "v1", "teacher-2", "k2")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, rec) {
		t.Fatalf("second RegisterWatermark = %+v, want %+v", again, rec)
	}
	for name, get := range map[string]func() (catalog.WatermarkRecord, error){
		"LookupWatermark": func() (catalog.WatermarkRecord, error) { return r.LookupWatermark(ctx, rec.ID) },
		"WatermarkOf":     func() (catalog.WatermarkRecord, error) { return r.WatermarkOf(ctx, "v1") },
	} {
		got, err := get()
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("%s = %+v, %v; want %+v", name, got, err, rec)
		}
	}
	if _, err := r.LookupWatermark(ctx, rec.ID^1); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("LookupWatermark(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := r.WatermarkOf(ctx, "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("WatermarkOf(unknown) = %v, want ErrNotFound", err)
	}
}

func testRegisterInvalid(t *testing.T, s catalog.Store, r catalog.Registry) {
	if _, err := r.RegisterWatermark(ctx, "missing", "t", "k1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("RegisterWatermark(missing video) = %v, want ErrNotFound", err)
	}
	create(t, s, sampleVideo("v1"))
	for _, args := range [][3]string{{"", "t", "k1"}, {"v1", "t", ""}} {
		if _, err := r.RegisterWatermark(ctx, args[0], args[1], args[2]); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("RegisterWatermark(%q) = %v, want ErrInvalid", args, err)
		}
	}
	if _, err := r.WatermarkOf(ctx, "v1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("a rejected registration left a record: %v", err)
	}
}

func testRegisterConcurrent(t *testing.T, s catalog.Store, r catalog.Registry) {
	create(t, s, sampleVideo("v1"))
	const n = 8
	ids := make([]catalog.WatermarkID, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rec, err := r.RegisterWatermark(ctx, "v1", "teacher-1", fmt.Sprintf("k%d", i))
			if err != nil {
				t.Error(err)
			}
			ids[i] = rec.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || id == 0 {
			t.Fatalf("concurrent registrations of one video gave ids %v", ids)
		}
	}
}

// testWatermarkIDsUnique registers many videos: ids are distinct and round-
// trip through the store whatever their top bit (half of random ids have it
// set, which a signed column must not mangle).
func testWatermarkIDsUnique(t *testing.T, s catalog.Store, r catalog.Registry) {
	seen := map[catalog.WatermarkID]string{}
	high := 0
	for i := range 64 {
		id := fmt.Sprintf("v%02d", i)
		create(t, s, sampleVideo(id))
		rec, err := r.RegisterWatermark(ctx, id, "teacher-1", "k1")
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[rec.ID]; dup {
			t.Fatalf("videos %s and %s got the same id %s", other, id, rec.ID)
		}
		seen[rec.ID] = id
		if rec.ID>>63 == 1 {
			high++
		}
		got, err := r.LookupWatermark(ctx, rec.ID)
		if err != nil || got.VideoID != id {
			t.Fatalf("LookupWatermark(%s) = %+v, %v; want video %s", rec.ID, got, err, id)
		}
	}
	if high == 0 || high == 64 {
		t.Fatalf("%d of 64 ids have the top bit set: ids are not uniformly random", high)
	}
}

func testRendition(t *testing.T, s catalog.Store, r catalog.Registry) {
	if _, err := r.Rendition(ctx, "missing"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("Rendition(missing video) = %v, want ErrNotFound", err)
	}
	create(t, s, sampleVideo("v1"))
	if _, err := r.Rendition(ctx, "v1"); !errors.Is(err, catalog.ErrNoRendition) {
		t.Fatalf("Rendition(before any) = %v, want ErrNoRendition", err)
	}
	want := catalog.Rendition{VideoID: "v1", BlobKey: "renditions/v1/watermarked.mp4", SHA256: "ab12", SizeBytes: 1234,
		Payload: 42, Frames: 600, Encode: media.EncodeOptions{CRF: 23, Preset: "medium"}, CreatedAt: us(base)}
	if err := r.SetRendition(ctx, want); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("SetRendition before registration = %v, want ErrInvalid", err)
	}
	rec, err := r.RegisterWatermark(ctx, "v1", "teacher-1", "k1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID == 42 {
		t.Skip("drew id 42")
	}
	if err := r.SetRendition(ctx, want); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("SetRendition with another payload = %v, want ErrInvalid", err)
	}
	want.Payload = rec.ID
	for _, bad := range []func(*catalog.Rendition){
		func(r *catalog.Rendition) { r.BlobKey = "" },
		func(r *catalog.Rendition) { r.SHA256 = "" },
		func(r *catalog.Rendition) { r.Frames = 0 },
		func(r *catalog.Rendition) { r.SizeBytes = 0 },
	} {
		b := want
		bad(&b)
		if err := r.SetRendition(ctx, b); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("SetRendition(%+v) = %v, want ErrInvalid", b, err)
		}
	}
	if err := r.SetRendition(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := r.Rendition(ctx, "v1")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Rendition = %+v, %v; want %+v", got, err, want)
	}
	// A re-run replaces it.
	want.SHA256, want.SizeBytes = "cd34", 999
	if err := r.SetRendition(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Rendition(ctx, "v1"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Rendition after replace = %+v, %v; want %+v", got, err, want)
	}
}
