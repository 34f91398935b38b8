package config

import (
	"strings"
	"testing"
)

func TestWatermarkSettings(t *testing.T) {
	for _, s := range Settings {
		t.Setenv(s.Env, "")
	}
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	w := c.Watermark
	if w.Key != "" || w.Encode.CRF != 23 || w.Encode.Preset != "medium" || w.DetectMaxBytes != 256<<20 || w.DetectTimeout.Seconds() != 60 {
		t.Fatalf("defaults: %+v", w)
	}
	secret := "00112233445566778899aabbccddeeff"
	t.Setenv("LESSONFLOW_WATERMARK_KEY", "k2:"+secret+",k1:ffeeddccbbaa99887766554433221100")
	t.Setenv("LESSONFLOW_WATERMARK_CRF", "28")
	t.Setenv("LESSONFLOW_WATERMARK_PRESET", "veryfast")
	c, err = FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := c.Watermark.Keyring()
	if err != nil || kr.Current.ID != "k2" || len(kr.All) != 2 || c.Watermark.Encode.CRF != 28 || c.Watermark.Encode.Preset != "veryfast" {
		t.Fatalf("keyring %v %v, encode %+v", kr.Current.ID, err, c.Watermark.Encode)
	}
	for env, val := range map[string]string{
		"LESSONFLOW_WATERMARK_KEY":    "k2:" + secret[:30] + "zz",
		"LESSONFLOW_WATERMARK_CRF":    "99",
		"LESSONFLOW_WATERMARK_PRESET": "turbo",
		"LESSONFLOW_DETECT_MAX_BYTES": "0",
		"LESSONFLOW_DETECT_TIMEOUT":   "soon",
	} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, val)
			_, err := FromEnv()
			if err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(strings.TrimSuffix(env, "_CRF"), "_PRESET")) {
				t.Fatalf("%s=%s: %v", env, val, err)
			}
			if strings.Contains(err.Error(), secret[:30]) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}
