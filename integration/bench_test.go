package integration

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/models"
)

// TestBenchTable is `make bench`: it measures, side by side in one run, the
// issue's three goals and prints a table. It asserts nothing about speed
// (machines are noisy); it runs only with LESSONFLOW_BENCH=1.
func TestBenchTable(t *testing.T) {
	if os.Getenv("LESSONFLOW_BENCH") == "" {
		t.Skip("a benchmark: run with LESSONFLOW_BENCH=1 (make bench)")
	}
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("LESSONFLOW_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	// The 1080p clips the goal names, plus a long real clip where per-stage
	// fixed costs amortize as they do for real lessons.
	clips := []string{"Big_Buck_Bunny_1080_10s_2MB.mp4", "Sintel_1080_10s_2MB.mp4", "one-by-one-person-detection.mp4"}
	var rows []string
	var peakRSS int64
	var pipeMS, pipeFrames float64
	var clfRows []string
	var rawTotal float64
	for _, name := range clips {
		path := testenv.SharedVideo(t, name)
		var decode, e2e []float64
		var frames [][]image.Image // per pipeline stage
		clipMS, clipFrames := 0.0, 0.0
		for i := 0; i < runs; i++ {
			// Alternate so load changes hit both sides alike.
			decode = append(decode, timeDecode(t, path))
			s := newStack(t, stackOptions{noWorker: true})
			w := s.startWorkerProcess(t, i)
			time.Sleep(2 * time.Second) // worker start-up (model load) is not part of a video's latency
			start := time.Now()
			code, body := s.upload(appKey, lessonForm(path))
			if code != http.StatusAccepted {
				t.Fatalf("upload: %d %v", code, body)
			}
			id := body["id"].(string)
			waitDecided(t, s, id)
			e2e = append(e2e, time.Since(start).Seconds())
			peakRSS = max(peakRSS, vmHWM(t, w.Process.Pid))
			logStages(t, s, id, start)
			ms, n, keys := classifyStageCost(t, s, id)
			clipMS += ms
			clipFrames += float64(n)
			if i == 0 {
				// Per stage, as the pipeline batches them.
				for _, pass := range []string{"/coarse/", "/dense/"} {
					var stage []string
					for _, k := range keys {
						if strings.Contains(k, pass) {
							stage = append(stage, k)
						}
					}
					frames = append(frames, loadFrames(t, s.blobs, stage))
				}
			}
		}
		raw := rawRunMS(t, frames)
		pipe := clipMS / clipFrames
		pipeMS += clipMS
		pipeFrames += clipFrames
		rawTotal += raw * clipFrames
		clfRows = append(clfRows, fmt.Sprintf("| classification ms/frame, %s (%.0f frames per run) | %.2f | %.2f | %.2fx | ≤ 1.2x |", name, clipFrames/float64(runs), pipe, raw, pipe/raw))
		md, me := median(decode), median(e2e)
		rows = append(rows, fmt.Sprintf("| %s | %.2f s | %.2f s | %.2fx | ≤ 1.5x |", name, md, me, me/md))
	}
	pipe, raw := pipeMS/pipeFrames, rawTotal/pipeFrames
	fmt.Printf("\nLessonFlow bench (%d runs per row, medians; %d CPUs)\n\n", runs, cpus())
	fmt.Println("| clip | ffmpeg -f null decode | upload → decision | ratio | goal |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Println()
	fmt.Println("| measure | pipeline | raw session.Run | ratio | goal |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range clfRows {
		fmt.Println(r)
	}
	fmt.Printf("| classification ms/frame, all frames (same frames and batches, 1 ORT thread) | %.2f | %.2f | %.2fx | ≤ 1.2x |\n", pipe, raw, pipe/raw)
	fmt.Printf("| worker peak RSS (VmHWM) | %.0f MiB | | | < 1024 MiB |\n\n", float64(peakRSS)/(1<<20))
}

func waitDecided(t *testing.T, s *stack, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		v, err := s.catalog.GetVideo(context.Background(), id)
		if err == nil && v.State != "processing" {
			if v.State != "approved" && v.State != "published" {
				t.Fatalf("%s ended %s: %s", id, v.State, v.Error)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not decided in time", id)
}

func timeDecode(t *testing.T, path string) float64 {
	t.Helper()
	start := time.Now()
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-f", "null", "-").CombinedOutput(); err != nil {
		t.Fatalf("decode: %v %s", err, out)
	}
	return time.Since(start).Seconds()
}

// classifyStageCost is the wall time of the classify stages and the frames they scored.
func classifyStageCost(t *testing.T, s *stack, id string) (ms float64, frames int, keys []string) {
	t.Helper()
	v, err := s.catalog.GetVideo(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range v.Stages {
		if (st.Name == "classify" || st.Name == "classify_dense") && st.StartedAt != nil && st.FinishedAt != nil {
			ms += float64(st.FinishedAt.Sub(*st.StartedAt).Microseconds()) / 1000
		}
	}
	infos, err := s.blobs.List(context.Background(), "frames/"+id+"/")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		if strings.HasSuffix(i.Key, ".jpg") {
			keys = append(keys, i.Key)
		}
	}
	return ms, len(keys), keys
}

func loadFrames(t *testing.T, store blob.Store, keys []string) []image.Image {
	t.Helper()
	var out []image.Image
	for _, k := range keys {
		b, err := blob.GetBytes(context.Background(), store, k, 16<<20)
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, img)
	}
	return out
}

// rawRunMS times the bare model run over the same frames in the same batches
// as the pipeline (batches of 8 within each stage), preprocessed beforehand.
func rawRunMS(t *testing.T, stages [][]image.Image) float64 {
	t.Helper()
	c := classifier(t)
	m, _ := models.LoadManifest(models.NSFWModelID)
	pp := m.Preprocessing
	per := pp.Width * pp.Height * 3
	const batch = 8
	var tensors [][]float32
	total := 0
	for _, frames := range stages {
		total += len(frames)
		for i := 0; i < len(frames); i += batch {
			n := min(batch, len(frames)-i)
			buf := make([]float32, n*per)
			for j := 0; j < n; j++ {
				models.Preprocess(frames[i+j], pp, buf[j*per:(j+1)*per])
			}
			tensors = append(tensors, buf)
		}
	}
	var perFrame []float64
	for rep := 0; rep < 3; rep++ {
		start := time.Now()
		for _, buf := range tensors {
			if _, err := c.RunPreprocessed(buf, len(buf)/per); err != nil {
				t.Fatal(err)
			}
		}
		perFrame = append(perFrame, float64(time.Since(start).Microseconds())/1000/float64(total))
	}
	return median(perFrame)
}

// vmHWM is a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func cpus() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// logStages prints each stage's offset from the upload and its duration.
func logStages(t *testing.T, s *stack, id string, upload time.Time) {
	v, err := s.catalog.GetVideo(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, st := range v.Stages {
		if st.StartedAt != nil && st.FinishedAt != nil {
			parts = append(parts, fmt.Sprintf("%s +%dms %dms", st.Name, st.StartedAt.Sub(upload).Milliseconds(), st.FinishedAt.Sub(*st.StartedAt).Milliseconds()))
		}
	}
	t.Logf("%s stages: %s", id, strings.Join(parts, " | "))
}
