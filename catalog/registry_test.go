package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
)

func TestWatermarkIDText(t *testing.T) {
	id := WatermarkID(0xfedcba9876543210)
	b, err := json.Marshal(map[string]WatermarkID{"payload": id})
	if err != nil || string(b) != `{"payload":"fedcba9876543210"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var back map[string]WatermarkID
	if err := json.Unmarshal(b, &back); err != nil || back["payload"] != id {
		t.Fatalf("unmarshal: %v %v", back, err)
	}
	for _, s := range []string{"", "0000000000000000", "fedcba987654321", "fedcba98765432100", "xyzcba9876543210", "+edcba9876543210"} {
		if _, err := ParseWatermarkID(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseWatermarkID(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

// TestRegisterRetriesCollisions forces the random source to repeat a taken id.
func TestRegisterRetriesCollisions(t *testing.T) {
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, _, err := s.CreateVideo(ctx, Video{ID: id, Title: id, Tags: []string{}}); err != nil {
			t.Fatal(err)
		}
	}
	draws := []WatermarkID{7, 7, 7, 9}
	old := newWatermarkID
	defer func() { newWatermarkID = old }()
	newWatermarkID = func() (WatermarkID, error) {
		if len(draws) == 0 {
			return 7, nil
		}
		d := draws[0]
		draws = draws[1:]
		return d, nil
	}
	if rec, err := s.RegisterWatermark(ctx, "a", "t", "k"); err != nil || rec.ID != 7 {
		t.Fatalf("first: %+v %v", rec, err)
	}
	if rec, err := s.RegisterWatermark(ctx, "b", "t", "k"); err != nil || rec.ID != 9 {
		t.Fatalf("after two collisions: %+v %v, want id 9", rec, err)
	}
	// Only collisions left: it gives up rather than loop.
	if _, err := s.RegisterWatermark(ctx, "c", "t", "k"); err == nil {
		t.Fatal("registered with every draw taken")
	}
	// Records are permanent, whatever touches the file.
	if _, err := s.w.ExecContext(ctx, `UPDATE watermarks SET video_id = 'c' WHERE payload = 7`); err == nil {
		t.Fatal("UPDATE of a watermark record succeeded")
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM watermarks`); err == nil {
		t.Fatal("DELETE of watermark records succeeded")
	}
}
