package vectorstore_test

import (
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/vectorstore"
)

func TestCollectionName(t *testing.T) {
	for _, c := range []struct {
		model string
		dim   int
		want  string
	}{
		{"mobilenet_v1_1.0_224_embed", 1024, "lessons_mobilenet_v1_1_0_224_embed_1024"},
		{"MobileNet V1 (1.0) 224", 1024, "lessons_mobilenet_v1_1_0_224_1024"},
		{"--clip/ViT-B-32--", 512, "lessons_clip_vit_b_32_512"},
		{"", 8, "lessons_model_8"},
		{"日本語", 8, "lessons_model_8"},
		{"a__b", 8, "lessons_a_b_8"},
	} {
		got := vectorstore.CollectionName(c.model, c.dim)
		if got != c.want {
			t.Errorf("CollectionName(%q, %d) = %s, want %s", c.model, c.dim, got, c.want)
		}
		if err := vectorstore.ValidCollection(got); err != nil {
			t.Errorf("CollectionName(%q, %d) = %s: %v", c.model, c.dim, got, err)
		}
	}
	// Two dimensions of one model never share a collection.
	if vectorstore.CollectionName("m", 512) == vectorstore.CollectionName("m", 1024) {
		t.Error("dimension not in the name")
	}
	// Long ids are cut to fit, and stay distinct.
	a := vectorstore.CollectionName(strings.Repeat("x", 400)+"a", 1024)
	b := vectorstore.CollectionName(strings.Repeat("x", 400)+"b", 1024)
	if a == b || len(a) > 255 || len(b) > 255 || !strings.HasSuffix(a, "_1024") {
		t.Errorf("long ids: %s (%d bytes), %s (%d bytes)", a, len(a), b, len(b))
	}
	for _, n := range []string{a, b} {
		if err := vectorstore.ValidCollection(n); err != nil {
			t.Error(err)
		}
	}
}

func TestValidCollection(t *testing.T) {
	for _, bad := range []string{"", "Lessons", "1lessons", "_x", "a-b", "a b", "a/b", "../x", strings.Repeat("a", 256)} {
		if vectorstore.ValidCollection(bad) == nil {
			t.Errorf("ValidCollection(%q) = nil", bad)
		}
	}
	for _, good := range []string{"a", "lessons_x_1", strings.Repeat("a", 255)} {
		if err := vectorstore.ValidCollection(good); err != nil {
			t.Errorf("ValidCollection(%q) = %v", good, err)
		}
	}
}
