// Package media owns everything that touches ffprobe and ffmpeg: probing and
// validating uploads, and sampling frames (with presentation timestamps) for
// the models. It knows nothing about Temporal, storage or policies.
package media
