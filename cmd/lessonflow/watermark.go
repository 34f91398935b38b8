package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/api"
	"github.com/lessonflow/lessonflow/config"
	"github.com/lessonflow/lessonflow/leak"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

const watermarkUsage = `Usage:
  lessonflow watermark embed --payload <16 hex digits> [--crf N] [--preset P] [--grid auto|fine|block] IN OUT
      mark every frame of IN with the payload and encode OUT (H.264 MP4, audio copied)
  lessonflow watermark detect [--json] [--seconds S] FILE
      look for a mark in FILE (a video or an image); with --json print
      {"found", "payload", "confidence", ...} and, when the local catalog's
      registry knows the id, the video it maps to

The key comes from LESSONFLOW_WATERMARK_KEY ("id:HEX,..."), else from the dev
key that ` + "`lessonflow dev`" + ` keeps in the data directory.
`

func runWatermark(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, watermarkUsage)
		return errors.New("watermark: want embed or detect")
	}
	switch args[0] {
	case "embed":
		return runWatermarkEmbed(ctx, args[1:])
	case "detect":
		return runWatermarkDetect(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Print(watermarkUsage)
		return nil
	}
	fmt.Fprint(os.Stderr, watermarkUsage)
	return fmt.Errorf("watermark: unknown subcommand %q", args[0])
}

// parseInterspersed parses flags wherever they appear among the positional
// arguments (`embed IN OUT --crf 28` as well as `embed --crf 28 IN OUT`).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// watermarkKeyring reads LESSONFLOW_WATERMARK_KEY, else the dev key file.
func watermarkKeyring(cfg config.Config) (watermark.Keyring, error) {
	if cfg.Watermark.Key == "" {
		b, err := os.ReadFile(cfg.Path(devWatermarkKeyFile))
		if err != nil {
			return watermark.Keyring{}, errors.New("LESSONFLOW_WATERMARK_KEY is not set (want \"id:HEX,...\", secrets of 16-64 bytes), and there is no dev key in the data directory")
		}
		cfg.Watermark.Key = strings.TrimSpace(string(b))
	}
	return cfg.Watermark.Keyring()
}

// watermarkEmbedArgs are the parsed arguments of `watermark embed`.
type watermarkEmbedArgs struct {
	payload watermark.Payload
	encode  media.EncodeOptions
	grid    string // "auto", "fine" or "block"
	in, out string
}

func parseWatermarkEmbed(args []string, def media.EncodeOptions) (watermarkEmbedArgs, error) {
	var a watermarkEmbedArgs
	fs := flag.NewFlagSet("watermark embed", flag.ContinueOnError)
	payload := fs.String("payload", "", "the 64-bit payload, 16 hex digits (required)")
	fs.IntVar(&a.encode.CRF, "crf", def.CRF, "x264 CRF (1-51)")
	fs.StringVar(&a.encode.Preset, "preset", def.Preset, "x264 preset")
	fs.StringVar(&a.grid, "grid", "auto", "watermark grid: auto (chosen from the keyframes and a trial encode on each grid, as the pipeline does), fine or block")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return a, err
	}
	if len(pos) != 2 {
		return a, fmt.Errorf("watermark embed: want IN and OUT, got %d arguments", len(pos))
	}
	a.in, a.out = pos[0], pos[1]
	if *payload == "" {
		return a, errors.New("watermark embed: --payload is required (16 hex digits)")
	}
	if a.payload, err = watermark.ParsePayload(*payload); err != nil {
		return a, err
	}
	if err := a.encode.Validate(); err != nil {
		return a, fmt.Errorf("watermark embed: %w", err)
	}
	if a.grid != "auto" {
		if _, err := watermark.ParseGrid(a.grid); err != nil {
			return a, fmt.Errorf("watermark embed: --grid: %w", err)
		}
	}
	if ai, ao := absPath(a.in), absPath(a.out); ai == ao {
		return a, errors.New("watermark embed: OUT must not be IN")
	}
	return a, nil
}

func runWatermarkEmbed(ctx context.Context, args []string) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	a, err := parseWatermarkEmbed(args, cfg.Watermark.Encode)
	if err != nil {
		return err
	}
	kr, err := watermarkKeyring(cfg)
	if err != nil {
		return err
	}
	emb, err := watermark.NewEmbedder(kr.Current)
	if err != nil {
		return err
	}
	if _, err := os.Stat(a.in); err != nil {
		return err
	}
	vs, err := media.ProbeStream(ctx, a.in)
	if err != nil {
		return err
	}
	var grid watermark.Grid
	if a.grid == "auto" {
		grid, err = activities.ChooseWatermarkGrid(ctx, a.in, vs, activities.GridTrial{Embedder: emb, Payload: a.payload, Encode: a.encode.WithDefaults()})
	} else {
		grid, err = watermark.ParseGrid(a.grid) // validated by parseWatermarkEmbed
	}
	if err != nil {
		return err
	}
	total := int(vs.DurationSec * vs.FPS)
	marker := emb.Video(a.payload, grid, 0)
	start := time.Now()
	tty := isTerminal(os.Stderr)
	last := time.Time{}
	opt := media.TranscodeOptions{
		Encode: a.encode, Stream: &vs,
		Progress: func(n int) {
			if tty && time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				fmt.Fprintf(os.Stderr, "\rmarking: frame %d of ~%d", n, total)
			}
		},
	}
	mark, done := activities.MarkPass(ctx, a.in, marker, vs, &opt, cfg.Watermark.MotionGate)
	res, err := media.Transcode(ctx, a.in, a.out, opt, mark)
	done()
	if tty {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	if err != nil {
		return fmt.Errorf("watermark embed %s: %w", a.in, err)
	}
	el := time.Since(start)
	fmt.Printf("%s: %d frames marked with payload %s (key %s, %s grid), CRF %d preset %s, in %.1f s (%.1f frames/s)\n",
		a.out, res.Frames, a.payload, kr.Current.ID, grid, a.encode.CRF, a.encode.Preset, el.Seconds(), float64(res.Frames)/el.Seconds())
	return nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// watermarkDetectArgs are the parsed arguments of `watermark detect`.
type watermarkDetectArgs struct {
	json    bool
	seconds float64
	file    string
}

func parseWatermarkDetect(args []string) (watermarkDetectArgs, error) {
	var a watermarkDetectArgs
	fs := flag.NewFlagSet("watermark detect", flag.ContinueOnError)
	fs.BoolVar(&a.json, "json", false, "print JSON")
	fs.Float64Var(&a.seconds, "seconds", leak.DefaultOptions.MaxSeconds, "look at the first S seconds of a video")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return a, err
	}
	if len(pos) != 1 {
		return a, fmt.Errorf("watermark detect: want one FILE, got %d arguments", len(pos))
	}
	if !(a.seconds > 0) {
		return a, fmt.Errorf("watermark detect: --seconds must be positive")
	}
	a.file = pos[0]
	return a, nil
}

func runWatermarkDetect(ctx context.Context, args []string) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	a, err := parseWatermarkDetect(args)
	if err != nil {
		return err
	}
	kr, err := watermarkKeyring(cfg)
	if err != nil {
		return err
	}
	if _, err := os.Stat(a.file); err != nil {
		return err
	}
	rep, err := leak.Detect(ctx, kr, a.file, leak.Options{MaxSeconds: a.seconds})
	if err != nil {
		return fmt.Errorf("watermark detect %s: %w", a.file, err)
	}
	// The registry: Postgres when configured, else this machine's SQLite file if it has one.
	if rep.Found {
		if _, err := os.Stat(cfg.Path("catalog.db")); err == nil || cfg.PostgresDSN != "" {
			cat, err := openCatalog(cfg)
			if err != nil {
				return err
			}
			defer cat.Close()
			if err := leak.Lookup(ctx, cat, &rep); err != nil {
				return err
			}
		}
	}
	if a.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if !rep.Found {
		fmt.Printf("%s: no watermark found (%d frames of %s, %dx%d)\n", a.file, rep.Frames, rep.Media, rep.Width, rep.Height)
		return nil
	}
	fmt.Printf("%s: watermark found\n  payload:    %s\n  key:        %s\n  confidence: %.3f\n  frames:     %d\n  transform:  %s\n",
		a.file, rep.Payload, rep.KeyID, rep.Confidence, rep.Frames, rep.Transform)
	if v := rep.Video; v != nil {
		fmt.Printf("  video:      %s %q (teacher %s, state %s, registered %s)\n", v.ID, v.Title, v.TeacherID, v.State, v.RegisteredAt.Format(time.RFC3339))
	} else {
		fmt.Printf("  video:      not in the local registry (%s)\n", absPath(cfg.Path("catalog.db")))
	}
	return nil
}

// Secrets `dev` generates once and keeps in the data directory (mode 0600),
// when the environment gives none: renditions made by an earlier run stay
// detectable and evidence URLs stay valid across restarts. Never logged.
const (
	devWatermarkKeyFile = "dev-watermark-key"
	devEvidenceKeyFile  = "dev-evidence-key"
)

// devWatermarkKey uses LESSONFLOW_WATERMARK_KEY, else the dev key.
func devWatermarkKey(cfg config.Config) (string, error) {
	return devSecret(cfg, devWatermarkKeyFile, cfg.Watermark.Key, func(hexSecret string) string {
		return "dev-" + time.Now().UTC().Format("20060102") + ":" + hexSecret
	})
}

// devEvidenceKey uses LESSONFLOW_EVIDENCE_KEY, else the dev key.
func devEvidenceKey(cfg config.Config) (string, error) {
	return devSecret(cfg, devEvidenceKeyFile, cfg.Review.EvidenceKey, func(hexSecret string) string { return hexSecret })
}

// devSecret is given when set, else the secret kept in file, else a new
// one: 32 random bytes, hex, formatted by format and stored.
func devSecret(cfg config.Config, file, given string, format func(hexSecret string) string) (string, error) {
	if given != "" {
		return given, nil
	}
	path := cfg.Path(file)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", err
	}
	key := format(hex.EncodeToString(secret[:]))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", err
	}
	slog.Info("generated a dev secret", "file", path)
	return key, nil
}

// setupWatermark gives a worker's activities their key and encode settings.
// Without a key the worker still runs, and approved videos fail the
// watermark stage with that reason.
func setupWatermark(cfg config.Config, acts *activities.Activities) error {
	acts.Encode = cfg.Watermark.Encode
	acts.NoMotionGate = !cfg.Watermark.MotionGate
	if cfg.Watermark.Key == "" {
		slog.Warn("LESSONFLOW_WATERMARK_KEY is not set: approved videos will fail the watermark stage")
		return nil
	}
	kr, err := cfg.Watermark.Keyring()
	if err != nil {
		return err
	}
	acts.WatermarkKeys = &kr
	slog.Info("watermark key loaded", "key_id", kr.Current.ID, "keys", len(kr.All), "crf", acts.Encode.CRF, "preset", acts.Encode.Preset)
	return nil
}

// setupDetect gives the API its detection key and limits. config.FromEnv
// already rejected a malformed key.
func setupDetect(cfg config.Config, s *api.Server) {
	s.DetectMaxBytes, s.DetectTimeout = cfg.Watermark.DetectMaxBytes, cfg.Watermark.DetectTimeout
	if cfg.Watermark.Key == "" {
		return // POST /v1/watermark/detect answers 503
	}
	kr, err := cfg.Watermark.Keyring()
	if err != nil {
		slog.Error("watermark detection disabled", "error", err)
		return
	}
	s.WatermarkKeys = &kr
}
