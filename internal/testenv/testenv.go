// Package testenv locates what tests run against: the repository root, the
// tools that `make setup` installs into .tools/, the shared test clips, and
// clips generated on the fly with ffmpeg's lavfi sources. Tests fail (not skip)
// when a tool is missing, so a broken setup can never pass silently.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ToolsDir is LESSONFLOW_TOOLS_DIR or <repo>/.tools.
func ToolsDir() string {
	if d := os.Getenv("LESSONFLOW_TOOLS_DIR"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), ".tools")
}

// ORTLib is the ONNX Runtime shared library installed by setup.
func ORTLib(t testing.TB) string {
	t.Helper()
	return mustExist(t, filepath.Join(ToolsDir(), "lib", "libonnxruntime.so.1"))
}

// ModelsDir is where setup copied the verified model files.
func ModelsDir(t testing.TB) string {
	t.Helper()
	return mustExist(t, filepath.Join(ToolsDir(), "models"))
}

// TemporalCLI is the Temporal CLI binary installed by setup.
func TemporalCLI(t testing.TB) string {
	t.Helper()
	return mustExist(t, filepath.Join(ToolsDir(), "bin", "temporal"))
}

// SharedTestdata is LESSONFLOW_TESTDATA or <repo>/../shared/testdata.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	d := os.Getenv("LESSONFLOW_TESTDATA")
	if d == "" {
		d = filepath.Join(RepoRoot(), "..", "shared", "testdata")
	}
	return mustExist(t, d)
}

// SharedVideo is one of the clips in shared/testdata/videos.
func SharedVideo(t testing.TB, name string) string {
	t.Helper()
	return mustExist(t, filepath.Join(SharedTestdata(t), "videos", name))
}

// SharedVideos lists the four safe real clips.
var SharedVideos = []string{
	"Big_Buck_Bunny_1080_10s_2MB.mp4",
	"Sintel_1080_10s_2MB.mp4",
	"car-detection.mp4",
	"one-by-one-person-detection.mp4",
}

// RequireFFmpeg fails the test when ffmpeg or ffprobe is not on PATH.
func RequireFFmpeg(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not on PATH: run `make setup`", bin)
		}
	}
}

var (
	clipMu    sync.Mutex
	clipCache = map[string]string{}
)

// Clip renders a clip with ffmpeg once per test binary and returns its path.
// args are ffmpeg arguments between `-y` and the output file, e.g.
// {"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4", "-c:v", "libx264"}.
// name must be unique per distinct args and carry the container extension.
func Clip(t testing.TB, name string, args ...string) string {
	t.Helper()
	RequireFFmpeg(t)
	clipMu.Lock()
	defer clipMu.Unlock()
	if p, ok := clipCache[name]; ok {
		return p
	}
	dir := filepath.Join(os.TempDir(), "lessonflow-testclips")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	if _, err := os.Stat(out); err == nil { // rendered by an earlier test binary
		clipCache[name] = out
		return out
	}
	tmp := out + ".part" + filepath.Ext(name)
	cmd := exec.Command("ffmpeg", append(append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...), tmp)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("render clip %s: %v\n%s", name, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	clipCache[name] = out
	return out
}

// CountPackets returns the video and audio packet counts of a media file,
// as ffprobe reads them (for a video stream, its frames).
func CountPackets(t testing.TB, path string) (video, audio int) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=codec_type,nb_read_packets",
		"-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		typ, n, _ := strings.Cut(line, ",")
		c, _ := strconv.Atoi(strings.TrimSpace(n))
		switch typ {
		case "video":
			video = c
		case "audio":
			audio = c
		}
	}
	return video, audio
}

func mustExist(t testing.TB, p string) string {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make setup` (%v)", p, err)
	}
	return p
}

// Open opens a file for the test's duration.
func Open(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// ReadFile reads a whole file, failing the test if it cannot.
func ReadFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
