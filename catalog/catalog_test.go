package catalog_test

import (
	"encoding/json"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
)

func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sorted(s ...string) []string { sort.Strings(s); return s }

// The JSON of these types is the public API.
func TestJSONShape(t *testing.T) {
	now := time.Now()
	v := catalog.Video{ID: "v", BlobKey: "secret/path", Media: &media.Info{}, Stages: []catalog.Stage{{Name: "probe", StartedAt: &now}}}
	if got, want := jsonKeys(t, v), sorted("id", "sha256", "title", "description", "level", "language", "tags", "teacher_id",
		"state", "error", "size_bytes", "media", "stages", "created_at", "updated_at"); !reflect.DeepEqual(got, want) {
		t.Errorf("Video keys %v, want %v", got, want)
	}
	if got, want := jsonKeys(t, v.Stages[0]), sorted("name", "state", "started_at", "finished_at", "error", "attempts"); !reflect.DeepEqual(got, want) {
		t.Errorf("Stage keys %v, want %v", got, want)
	}
	d := catalog.Decision{Key: "internal"}
	if got, want := jsonKeys(t, d), sorted("seq", "video_id", "actor", "outcome", "reason", "model_id", "model_sha256",
		"policy_version", "sampler", "segments", "scores", "created_at"); !reflect.DeepEqual(got, want) {
		t.Errorf("Decision keys %v, want %v", got, want)
	}
}

func TestStateValid(t *testing.T) {
	for _, s := range catalog.States {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
	}
	for _, s := range []catalog.State{"", "Approved", "deleted"} {
		if s.Valid() {
			t.Errorf("%q valid", s)
		}
	}
}
