package api

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// uploadPrefix holds uploads as uploads/<unix seconds>-<random>: the time in
// the key lets the sweeper judge an upload's age on any blob backend.
const uploadPrefix = "uploads/"

func uploadKey(now time.Time) string {
	return uploadPrefix + strconv.FormatInt(now.Unix(), 10) + "-" + randomID()
}

// uploadTime reads the time back from an upload key.
func uploadTime(key string) (time.Time, bool) {
	stamp, _, ok := strings.Cut(strings.TrimPrefix(key, uploadPrefix), "-")
	sec, err := strconv.ParseInt(stamp, 10, 64)
	if !ok || err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// SweepOrphanUploads removes stored uploads older than minAge that no video
// refers to: what a crash between storing an upload and recording its video
// leaves behind. minAge must exceed the longest upload, so none in flight is
// touched.
func (s *Server) SweepOrphanUploads(ctx context.Context, minAge time.Duration) (int, error) {
	infos, err := s.Blobs.List(ctx, uploadPrefix)
	if err != nil {
		return 0, fmt.Errorf("sweep uploads: %w", err)
	}
	removed := 0
	for _, info := range infos {
		at, ok := uploadTime(info.Key)
		if !ok || time.Since(at) < minAge {
			continue
		}
		used, err := s.Catalog.BlobKeyInUse(ctx, info.Key)
		if err != nil {
			return removed, fmt.Errorf("sweep uploads: %w", err)
		}
		if used {
			continue
		}
		if err := s.Blobs.Delete(ctx, info.Key); err != nil {
			return removed, fmt.Errorf("sweep uploads: %w", err)
		}
		s.Logger.Info("removed orphan upload", "key", info.Key, "size", info.Size, "stored_at", at)
		removed++
	}
	return removed, nil
}

// SweepEvery runs SweepOrphanUploads now and then every interval until ctx ends.
func (s *Server) SweepEvery(ctx context.Context, interval, minAge time.Duration) {
	for {
		if _, err := s.SweepOrphanUploads(ctx, minAge); err != nil && ctx.Err() == nil {
			s.Logger.Warn("upload sweep failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
