package config

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

// WatermarkConfig is the watermark pass's and detection's settings.
type WatermarkConfig struct {
	// Key is LESSONFLOW_WATERMARK_KEY, "id:HEX,...": secret, never logged.
	// Empty: `dev` generates one into the data directory; other commands run
	// without, and the watermark stage fails with that reason.
	Key            string
	Encode         media.EncodeOptions // LESSONFLOW_WATERMARK_CRF, LESSONFLOW_WATERMARK_PRESET
	MotionGate     bool                // LESSONFLOW_WATERMARK_MOTION_GATE: the block grid leaves out squares that keep moving
	DetectMaxBytes int64               // LESSONFLOW_DETECT_MAX_BYTES: POST /v1/watermark/detect upload limit
	DetectTimeout  time.Duration       // LESSONFLOW_DETECT_TIMEOUT: CPU time bound of one detection
}

// Keyring parses Key; the error never holds the secret.
func (w WatermarkConfig) Keyring() (watermark.Keyring, error) {
	kr, err := watermark.ParseKeyring(w.Key)
	if err != nil {
		return kr, fmt.Errorf("LESSONFLOW_WATERMARK_KEY: %w", err)
	}
	return kr, nil
}

func (w *WatermarkConfig) fromEnv() []error {
	var errs []error
	w.Key = os.Getenv("LESSONFLOW_WATERMARK_KEY")
	if w.Key != "" {
		if _, err := w.Keyring(); err != nil {
			errs = append(errs, err)
		}
	}
	crf, err := strconv.Atoi(env("LESSONFLOW_WATERMARK_CRF", "23"))
	if err != nil {
		crf = -1
	}
	w.Encode = media.EncodeOptions{CRF: crf, Preset: env("LESSONFLOW_WATERMARK_PRESET", "medium")}
	if err := w.Encode.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("LESSONFLOW_WATERMARK_CRF/PRESET: %w", err))
	}
	switch v := env("LESSONFLOW_WATERMARK_MOTION_GATE", "on"); v {
	case "on", "off":
		w.MotionGate = v == "on"
	default:
		errs = append(errs, fmt.Errorf("LESSONFLOW_WATERMARK_MOTION_GATE: want on or off, got %q", v))
	}
	w.DetectMaxBytes, err = strconv.ParseInt(env("LESSONFLOW_DETECT_MAX_BYTES", "268435456"), 10, 64)
	if err != nil || w.DetectMaxBytes <= 0 {
		errs = append(errs, fmt.Errorf("LESSONFLOW_DETECT_MAX_BYTES: want a positive integer, got %q", os.Getenv("LESSONFLOW_DETECT_MAX_BYTES")))
	}
	w.DetectTimeout, err = time.ParseDuration(env("LESSONFLOW_DETECT_TIMEOUT", "60s"))
	if err != nil || w.DetectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("LESSONFLOW_DETECT_TIMEOUT: want a positive duration like 60s, got %q", os.Getenv("LESSONFLOW_DETECT_TIMEOUT")))
	}
	return errs
}
