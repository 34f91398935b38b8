package activities

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
)

// sampleFixture runs SampleFrames on a 20-s clip whose picks are the
// policy's minimum rate and testsrc2's scene changes.
func sampleFixture(t *testing.T) (*wmFixture, SampleInput) {
	t.Helper()
	clip := testenv.Clip(t, "sample-resume-testsrc2-320x240-25-20s.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=20",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
	fx := newWMFixtureFrom(t, clip)
	p, err := moderation.LoadPolicy("default")
	if err != nil {
		t.Fatal(err)
	}
	fx.acts.Policy, fx.acts.SampleCheckpoint = p, time.Nanosecond // a checkpoint after every frame
	info, err := media.Probe(context.Background(), clip, media.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	return fx, SampleInput{VideoRef: fx.ref, Info: info}
}

// runSample executes SampleFrames in Temporal's test environment from
// details (nil: a first attempt) and returns the last checkpoint it
// heartbeated.
func runSample(t *testing.T, fx *wmFixture, in SampleInput, details *sampleCheckpoint) (FrameSet, *sampleCheckpoint, error) {
	t.Helper()
	return runResumable[FrameSet](t, fx.acts.SampleFrames, in, details, func(cp sampleCheckpoint) bool { return cp.Key != "" })
}

func manifestOf(t *testing.T, fx *wmFixture, fs FrameSet) []string {
	t.Helper()
	var m frameManifest
	if err := getJSON(context.Background(), fx.store, fs.Key, fs.SHA256, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range m.Frames {
		out = append(out, fmt.Sprintf("%d@%d scene=%v %s %s", f.Index, f.PTSMS, f.Scene, f.Key, f.SHA256))
	}
	return out
}

// TestSampleFramesResumes: an attempt that fails storing frame 5 leaves a
// checkpoint after frame 4; the retry stores none of frames 0-4 again,
// decodes on from there, and ends with the manifest an uninterrupted run
// makes. A checkpoint of other sampler settings is ignored.
func TestSampleFramesResumes(t *testing.T) {
	ref, in := sampleFixture(t)
	whole, _, err := runSample(t, ref, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := manifestOf(t, ref, whole)
	if len(want) < 8 {
		t.Fatalf("only %d frames: the clip is too short for the test", len(want))
	}

	fx, in := sampleFixture(t)
	fx.store.failOn = "coarse/000005.jpg"
	_, cp, err := runSample(t, fx, in, nil)
	if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
		t.Fatalf("first attempt: %v, want the injected failure", err)
	}
	if cp == nil || cp.Resume.Next != 5 {
		t.Fatalf("last checkpoint %+v, want one after 5 frames", cp)
	}
	fx.store.failOn, fx.store.puts = "", nil
	fs, _, err := runSample(t, fx, in, cp)
	if err != nil {
		t.Fatal(err)
	}
	if got := manifestOf(t, fx, fs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("resumed manifest:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range 5 {
		if n := fx.store.putsUnder(fmt.Sprintf("frames/v1/coarse/%06d.jpg", i)); n != 0 {
			t.Fatalf("frame %d stored again by the retry (%d puts)", i, n)
		}
	}
	if n := fx.store.putsUnder("frames/v1/coarse/"); n != len(want)-5 {
		t.Fatalf("the retry stored %d frames, want %d", n, len(want)-5)
	}
	if left, _ := fx.store.List(context.Background(), resumePrefix("v1")); len(left) != 0 {
		t.Fatalf("checkpoints left: %v", left)
	}

	// Settings changed between attempts: start over.
	fx.store.puts = nil
	other := *cp
	other.Sampler.Width++
	if _, _, err := runSample(t, fx, in, &other); err != nil {
		t.Fatal(err)
	}
	if n := fx.store.putsUnder("frames/v1/coarse/000000.jpg"); n != 1 {
		t.Fatalf("a checkpoint of other settings was used (frame 0 stored %d times)", n)
	}
}
