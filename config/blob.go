package config

import (
	"fmt"
	"os"
	"strconv"

	"github.com/lessonflow/lessonflow/blob"
)

// BlobConfig is where blob.Store keeps its objects.
type BlobConfig struct {
	// S3 is used when S3.Bucket is set; else objects are files under the
	// data directory (blob.FS).
	S3 blob.S3Config
}

func (b *BlobConfig) fromEnv() []error {
	b.S3 = blob.S3Config{
		Bucket:    os.Getenv("LESSONFLOW_S3_BUCKET"),
		Endpoint:  env("LESSONFLOW_S3_ENDPOINT", "s3.amazonaws.com"),
		Prefix:    os.Getenv("LESSONFLOW_S3_PREFIX"),
		Region:    os.Getenv("LESSONFLOW_S3_REGION"),
		AccessKey: os.Getenv("LESSONFLOW_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("LESSONFLOW_S3_SECRET_KEY"),
	}
	insecure, err := strconv.ParseBool(env("LESSONFLOW_S3_INSECURE", "false"))
	if err != nil {
		return []error{fmt.Errorf("LESSONFLOW_S3_INSECURE: want true or false, got %q", os.Getenv("LESSONFLOW_S3_INSECURE"))}
	}
	b.S3.Insecure = insecure
	return nil
}
