package models

import (
	"strings"
	"testing"
)

func TestManifests(t *testing.T) {
	ms := Manifests()
	if len(ms) != 2 || ms[0].ID != EmbedderModelID || ms[1].ID != NSFWModelID {
		t.Fatalf("Manifests() ids = %v", ids(ms))
	}
	nsfw := mustManifest(t, NSFWModelID)
	if got := strings.Join(nsfw.Labels, ","); got != "Drawing,Hentai,Neutral,Porn,Sexy" {
		t.Errorf("labels = %s", got)
	}
	p := nsfw.Preprocessing
	if p.Width != 224 || p.Height != 224 || p.Scale != float32(1.0/255) || p.Resize != ResizeBilinearAlignCorners {
		t.Errorf("preprocessing = %+v", p)
	}
	emb := mustManifest(t, EmbedderModelID)
	if o, ok := emb.output(embeddingOutput); !ok || o.Shape[1] != 1024 || len(emb.Labels) != 0 {
		t.Errorf("embedder outputs = %+v, labels %v", emb.Outputs, emb.Labels)
	}
	if _, err := LoadManifest("nope"); err == nil {
		t.Error("LoadManifest(nope) succeeded")
	}

	// Callers get copies: mutating one must not leak into the next lookup.
	nsfw.Labels[0] = "mutated"
	nsfw.Outputs[0].Shape[1] = 99
	if again := mustManifest(t, NSFWModelID); again.Labels[0] != "Drawing" || again.Outputs[0].Shape[1] != 5 {
		t.Error("LoadManifest returned shared slices")
	}
}

func ids(ms []Manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestValidateRejects(t *testing.T) {
	for name, mutate := range map[string]func(*Manifest){
		"layout NCHW":      func(m *Manifest) { m.Input.Layout = "NCHW" },
		"resize half-px":   func(m *Manifest) { m.Preprocessing.Resize = "bilinear" },
		"color BGR":        func(m *Manifest) { m.Preprocessing.Color = "BGR" },
		"dtype uint8":      func(m *Manifest) { m.Input.DType = "uint8" },
		"label missing":    func(m *Manifest) { m.Labels = m.Labels[:4] },
		"label repeated":   func(m *Manifest) { m.Labels[1] = "Drawing" },
		"input size":       func(m *Manifest) { m.Input.Shape = []int64{-1, 299, 299, 3} },
		"sha256 short":     func(m *Manifest) { m.SHA256 = m.SHA256[:10] },
		"file with dir":    func(m *Manifest) { m.File = "../x.onnx" },
		"std zero":         func(m *Manifest) { m.Preprocessing.Std = []float32{1, 0, 1} },
		"no outputs":       func(m *Manifest) { m.Outputs = nil },
		"labels no probs":  func(m *Manifest) { m.Outputs = m.Outputs[1:] },
		"output dup":       func(m *Manifest) { m.Outputs[1].Name = "probs" },
		"scale zero":       func(m *Manifest) { m.Preprocessing.Scale = 0 },
		"mean two values":  func(m *Manifest) { m.Preprocessing.Mean = []float32{0, 0} },
		"empty license":    func(m *Manifest) { m.License = "" },
		"output rank 3":    func(m *Manifest) { m.Outputs[0].Shape = []int64{-1, 5, 1} },
		"input batch zero": func(m *Manifest) { m.Input.Shape[0] = 0 },
	} {
		m := mustManifest(t, NSFWModelID)
		mutate(&m)
		if err := m.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, m)
		}
	}
}
