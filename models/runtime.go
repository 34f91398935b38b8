package models

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrSHA256Mismatch is wrapped by Verify and the model constructors when a
// model file's content is not the one its manifest pins.
var ErrSHA256Mismatch = errors.New("sha256 mismatch")

// ONNX Runtime has one environment per process and onnxruntime_go keeps the
// library path in a global, so Init records what it did: a second call with
// the same library is a no-op, a different library is refused instead of
// silently running against the first one.
var (
	initMu   sync.Mutex
	initPath string
	initErr  error
	initDone bool
)

// Init loads the ONNX Runtime shared library at libPath and creates the
// process-wide ORT environment. Like sync.Once, the first call decides:
// later calls with the same path return the first call's result, and calls
// with a different path fail. The environment is never destroyed; it lives
// as long as the process.
func Init(libPath string) error {
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return fmt.Errorf("init onnxruntime %s: %w", libPath, err)
	}
	initMu.Lock()
	defer initMu.Unlock()
	if initDone {
		if abs != initPath {
			return fmt.Errorf("init onnxruntime %s: already initialized with %s", abs, initPath)
		}
		return initErr
	}
	initDone, initPath = true, abs
	initErr = initORT(abs)
	return initErr
}

func initORT(lib string) error {
	// Stat first: dlopen's own message for a missing file is easy to misread.
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("init onnxruntime: %w", err)
	}
	if ort.IsInitialized() {
		return fmt.Errorf("init onnxruntime %s: environment was initialized outside package models", lib)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelWarning()); err != nil {
		return fmt.Errorf("init onnxruntime %s: %w", lib, err)
	}
	return nil
}

// initialized reports whether Init succeeded.
func initialized() error {
	initMu.Lock()
	defer initMu.Unlock()
	if !initDone {
		return errors.New("onnxruntime not initialized: call models.Init first")
	}
	return initErr
}

// Verify streams the file at path through SHA-256 and compares it with
// wantSHA256 (hex, case-insensitive). A mismatch wraps ErrSHA256Mismatch.
func Verify(path, wantSHA256 string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	return checkSum(path, h.Sum(nil), wantSHA256)
}

func checkSum(path string, got []byte, want string) error {
	if g := hex.EncodeToString(got); !strings.EqualFold(g, want) {
		return fmt.Errorf("verify %s: %w: got %s, want %s", path, ErrSHA256Mismatch, g, strings.ToLower(want))
	}
	return nil
}
