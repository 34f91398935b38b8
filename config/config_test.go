package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEDocumentsEverySetting keeps the README's configuration table in step.
func TestREADMEDocumentsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings {
		row := "| `" + s.Env + "` | `" + s.Default + "` |"
		if !strings.Contains(string(b), row) {
			t.Errorf("README lacks the row for %s (want it to start with %q)", s.Env, row)
		}
	}
}

func TestFromEnvDefaultsAndErrors(t *testing.T) {
	for _, s := range Settings {
		t.Setenv(s.Env, "")
	}
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxUploadBytes != 4<<30 || c.HTTPAddr != "127.0.0.1:8080" || c.MaxDuration.Hours() != 4 || c.Policy != "default" {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("LESSONFLOW_MAX_UPLOAD_BYTES", "lots")
	t.Setenv("LESSONFLOW_MAX_DURATION", "-1h")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "LESSONFLOW_MAX_UPLOAD_BYTES") || !strings.Contains(err.Error(), "LESSONFLOW_MAX_DURATION") {
		t.Fatalf("want both errors, got %v", err)
	}
}

func TestParseAPIKeys(t *testing.T) {
	keys, err := ParseAPIKeys("aaaaaaaaaaaaaaaa=app, bbbbbbbbbbbbbbbb=admin, cccccccccccccccc=reviewer:alice, dddddddddddddddd=reviewer:alice, eeeeeeeeeeeeeeee=metrics")
	if err != nil || keys.Roles["aaaaaaaaaaaaaaaa"] != "app" || keys.Roles["bbbbbbbbbbbbbbbb"] != "admin" || keys.Roles["eeeeeeeeeeeeeeee"] != "metrics" ||
		keys.Roles["cccccccccccccccc"] != "reviewer" || keys.Names["cccccccccccccccc"] != "alice" || keys.Names["dddddddddddddddd"] != "alice" {
		t.Fatalf("%v %v", keys, err)
	}
	if _, named := keys.Names["aaaaaaaaaaaaaaaa"]; named {
		t.Fatal("an unnamed token has a name")
	}
	for _, bad := range []string{"short=app", "aaaaaaaaaaaaaaaa=root", "aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa=reviewer:",
		"aaaaaaaaaaaaaaaa=reviewer:Alice", "aaaaaaaaaaaaaaaa=reviewer:rk_0123", "aaaaaaaaaaaaaaaa=reviewer:a b",
		"aaaaaaaaaaaaaaaa=app,aaaaaaaaaaaaaaaa=admin"} {
		if _, err := ParseAPIKeys(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "aaaaaaaaaaaaaaaa") {
			t.Errorf("error leaks the token: %v", err)
		}
	}
}

func TestBlobSettings(t *testing.T) {
	for _, s := range Settings {
		t.Setenv(s.Env, "")
	}
	c, err := FromEnv()
	if err != nil || c.Blob.S3.Bucket != "" || c.Blob.S3.Endpoint != "s3.amazonaws.com" || c.Blob.S3.Insecure {
		t.Fatalf("defaults: %+v, %v", c.Blob, err)
	}
	t.Setenv("LESSONFLOW_S3_BUCKET", "lessons")
	t.Setenv("LESSONFLOW_S3_ENDPOINT", "127.0.0.1:9000")
	t.Setenv("LESSONFLOW_S3_INSECURE", "true")
	if c, err = FromEnv(); err != nil || c.Blob.S3.Bucket != "lessons" || c.Blob.S3.Endpoint != "127.0.0.1:9000" || !c.Blob.S3.Insecure {
		t.Fatalf("set: %+v, %v", c.Blob, err)
	}
	t.Setenv("LESSONFLOW_S3_INSECURE", "maybe")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "LESSONFLOW_S3_INSECURE") {
		t.Fatalf("want an error naming LESSONFLOW_S3_INSECURE, got %v", err)
	}
}

// The embedded store's probe settings: defaults, the fixed probe, and
// values the store would refuse.
func TestVectorProbeSettings(t *testing.T) {
	for _, s := range Settings {
		t.Setenv(s.Env, "")
	}
	c, err := FromEnv()
	if err != nil || c.VectorProbe != 4 || c.VectorProbeMargin != 0.15 {
		t.Fatalf("defaults: probe %d margin %g, %v", c.VectorProbe, c.VectorProbeMargin, err)
	}
	t.Setenv("LESSONFLOW_VECTOR_PROBE", "8")
	t.Setenv("LESSONFLOW_VECTOR_PROBE_MARGIN", "-1")
	if c, err = FromEnv(); err != nil || c.VectorProbe != 8 || c.VectorProbeMargin != -1 {
		t.Fatalf("probe 8, fixed: probe %d margin %g, %v", c.VectorProbe, c.VectorProbeMargin, err)
	}
	for _, bad := range [][2]string{{"300", "0.15"}, {"0", "0.15"}, {"4", "0"}, {"4", "NaN"}, {"4", "wide"}} {
		t.Setenv("LESSONFLOW_VECTOR_PROBE", bad[0])
		t.Setenv("LESSONFLOW_VECTOR_PROBE_MARGIN", bad[1])
		if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "LESSONFLOW_VECTOR_PROBE") {
			t.Errorf("probe %q margin %q: want an error naming the setting, got %v", bad[0], bad[1], err)
		}
	}
}
