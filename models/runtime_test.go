package models

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/internal/testenv"
)

func TestInit(t *testing.T) {
	lib := testenv.ORTLib(t)
	initTestORT(t)
	if err := Init(lib); err != nil {
		t.Errorf("second Init with the same path: %v", err)
	}
	// A symlink is a different path: refused, even if it is the same library,
	// so a process never silently runs a library other than the one asked for.
	other := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.Symlink(lib, other); err != nil {
		t.Fatal(err)
	}
	if err := Init(other); err == nil || !strings.Contains(err.Error(), "already initialized") {
		t.Errorf("Init with a different path: err = %v", err)
	}
}

func TestVerify(t *testing.T) {
	m := mustManifest(t, EmbedderModelID)
	path := filepath.Join(testenv.ModelsDir(t), m.File)
	if err := Verify(path, m.SHA256); err != nil {
		t.Fatalf("Verify good model: %v", err)
	}
	if err := Verify(path, strings.ToUpper(m.SHA256)); err != nil {
		t.Errorf("Verify is case-sensitive: %v", err)
	}
	err := Verify(path, strings.Repeat("0", 64))
	if !errors.Is(err, ErrSHA256Mismatch) || !strings.Contains(err.Error(), m.SHA256) {
		t.Errorf("Verify wrong sum: err = %v", err)
	}
	if err := Verify(filepath.Join(t.TempDir(), "missing.onnx"), m.SHA256); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify missing file: err = %v", err)
	}
}
