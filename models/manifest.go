package models

import (
	"bytes"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// IDs of the manifests shipped in manifests/.
const (
	NSFWModelID     = "nsfw_mobilenet_v2_224"
	EmbedderModelID = "mobilenet_v1_1.0_224_embed"
)

// Output names the code relies on: a classifier reads "probs" (softmax, one
// column per label), an embedder reads "embedding" (L2-normalised).
const (
	probsOutput     = "probs"
	embeddingOutput = "embedding"
)

// Values of the manifest's enumerated fields that this package implements.
const (
	LayoutNHWC                 = "NHWC"
	DTypeFloat32               = "float32"
	ColorRGB                   = "RGB"
	ResizeBilinearAlignCorners = "bilinear_align_corners"
)

// Manifest describes one model file and the exact contract for feeding it.
type Manifest struct {
	ID            string        `json:"id"`
	File          string        `json:"file"`
	SHA256        string        `json:"sha256"`
	License       string        `json:"license"`
	Input         Input         `json:"input"`
	Preprocessing Preprocessing `json:"preprocessing"`
	Outputs       []Output      `json:"outputs"`
	Labels        []string      `json:"labels"`
}

// Input is the model's single image input.
type Input struct {
	Name   string  `json:"name"`
	Shape  []int64 `json:"shape"` // -1 marks the dynamic batch dimension
	Layout string  `json:"layout"`
	DType  string  `json:"dtype"`
}

// Preprocessing says how an image becomes the input tensor: value =
// (channel*Scale - Mean[c]) / Std[c], after resizing to Width x Height.
type Preprocessing struct {
	Color  string    `json:"color"`
	Resize string    `json:"resize"`
	Width  int       `json:"width"`
	Height int       `json:"height"`
	Scale  float32   `json:"scale"`
	Mean   []float32 `json:"mean"`
	Std    []float32 `json:"std"`
}

// Output is one named model output.
type Output struct {
	Name  string  `json:"name"`
	Shape []int64 `json:"shape"`
}

// output returns the named output, or false.
func (m Manifest) output(name string) (Output, bool) {
	for _, o := range m.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return Output{}, false
}

//go:embed manifests/*.json
var manifestFS embed.FS

var (
	manifestsOnce sync.Once
	manifestsByID map[string]Manifest
	manifestsErr  error
)

// loadAll parses and validates every embedded manifest once. A bad manifest
// is a build defect, so it fails every lookup rather than being skipped.
func loadAll() (map[string]Manifest, error) {
	manifestsOnce.Do(func() {
		manifestsByID, manifestsErr = parseManifests()
	})
	return manifestsByID, manifestsErr
}

func parseManifests() (map[string]Manifest, error) {
	entries, err := manifestFS.ReadDir("manifests")
	if err != nil {
		return nil, fmt.Errorf("read embedded manifests: %w", err)
	}
	byID := make(map[string]Manifest, len(entries))
	for _, e := range entries {
		name := path.Join("manifests", e.Name())
		b, err := manifestFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read manifest %s: %w", name, err)
		}
		var m Manifest
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields() // a typo'd field would otherwise be silently ignored
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("parse manifest %s: %w", name, err)
		}
		if want := strings.TrimSuffix(e.Name(), ".json"); m.ID != want {
			return nil, fmt.Errorf("manifest %s: id %q does not match file name", name, m.ID)
		}
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", name, err)
		}
		byID[m.ID] = m
	}
	return byID, nil
}

// LoadManifest returns the embedded manifest with the given id.
func LoadManifest(id string) (Manifest, error) {
	all, err := loadAll()
	if err != nil {
		return Manifest{}, fmt.Errorf("load manifest %s: %w", id, err)
	}
	m, ok := all[id]
	if !ok {
		return Manifest{}, fmt.Errorf("load manifest %s: unknown model id", id)
	}
	return m.clone(), nil
}

// Manifests returns every embedded manifest, sorted by ID. It panics if an
// embedded manifest is invalid, which TestManifests rules out at build time.
func Manifests() []Manifest {
	all, err := loadAll()
	if err != nil {
		panic(err)
	}
	out := make([]Manifest, 0, len(all))
	for _, m := range all {
		out = append(out, m.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// clone deep-copies the slices so callers cannot mutate the shared copy.
func (m Manifest) clone() Manifest {
	m.Input.Shape = append([]int64(nil), m.Input.Shape...)
	m.Preprocessing.Mean = append([]float32(nil), m.Preprocessing.Mean...)
	m.Preprocessing.Std = append([]float32(nil), m.Preprocessing.Std...)
	outs := make([]Output, len(m.Outputs))
	for i, o := range m.Outputs {
		outs[i] = Output{Name: o.Name, Shape: append([]int64(nil), o.Shape...)}
	}
	m.Outputs = outs
	m.Labels = append([]string(nil), m.Labels...)
	return m
}

// Validate checks that the manifest describes something this package can
// feed and read: an NHWC float32 RGB input whose spatial size matches the
// preprocessing, the align-corners resize, and, when there is a "probs"
// output or labels, exactly one label per probability column.
func (m Manifest) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if m.ID == "" {
		bad("id is empty")
	}
	if m.File == "" || filepath.Base(m.File) != m.File || m.File == "." || m.File == ".." {
		bad("file %q must be a bare file name", m.File)
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != 32 || strings.ToLower(m.SHA256) != m.SHA256 {
		bad("sha256 %q is not 64 lowercase hex digits", m.SHA256)
	}
	if m.License == "" {
		bad("license is empty")
	}

	p := m.Preprocessing
	if p.Color != ColorRGB {
		bad("preprocessing.color %q unsupported (want %s)", p.Color, ColorRGB)
	}
	if p.Resize != ResizeBilinearAlignCorners {
		bad("preprocessing.resize %q unsupported (want %s)", p.Resize, ResizeBilinearAlignCorners)
	}
	if p.Width < 1 || p.Height < 1 {
		bad("preprocessing size %dx%d must be positive", p.Width, p.Height)
	}
	if !(p.Scale > 0) {
		bad("preprocessing.scale %v must be positive", p.Scale)
	}
	if len(p.Mean) != 3 || len(p.Std) != 3 {
		bad("preprocessing mean/std need 3 values each, got %d/%d", len(p.Mean), len(p.Std))
	}
	for _, s := range p.Std {
		if s == 0 {
			bad("preprocessing.std must not contain 0")
		}
	}

	in := m.Input
	if in.Name == "" {
		bad("input.name is empty")
	}
	if in.Layout != LayoutNHWC {
		bad("input.layout %q unsupported (want %s)", in.Layout, LayoutNHWC)
	}
	if in.DType != DTypeFloat32 {
		bad("input.dtype %q unsupported (want %s)", in.DType, DTypeFloat32)
	}
	if want := []int64{-1, int64(p.Height), int64(p.Width), 3}; len(in.Shape) != 4 ||
		(in.Shape[0] != -1 && in.Shape[0] < 1) || in.Shape[1] != want[1] || in.Shape[2] != want[2] || in.Shape[3] != 3 {
		bad("input.shape %v does not match NHWC %v from preprocessing", in.Shape, want)
	}

	if len(m.Outputs) == 0 {
		bad("no outputs")
	}
	seen := map[string]bool{}
	for _, o := range m.Outputs {
		if o.Name == "" || seen[o.Name] {
			bad("output name %q is empty or repeated", o.Name)
		}
		seen[o.Name] = true
		if len(o.Shape) != 2 || o.Shape[1] < 1 {
			bad("output %s shape %v: want [N, D] with D >= 1", o.Name, o.Shape)
		}
	}

	probs, isClassifier := m.output(probsOutput)
	switch {
	case isClassifier && len(probs.Shape) == 2 && int64(len(m.Labels)) != probs.Shape[1]:
		bad("%d labels for %s width %d", len(m.Labels), probsOutput, probs.Shape[1])
	case !isClassifier && len(m.Labels) > 0:
		bad("labels given but no %s output", probsOutput)
	}
	labels := map[string]bool{}
	for _, l := range m.Labels {
		if l == "" || labels[l] {
			bad("label %q is empty or repeated", l)
		}
		labels[l] = true
	}
	return errors.Join(errs...)
}
