// Package integration holds LessonFlow's end-to-end tests: uploads through the
// real HTTP API, a real Temporal dev server, workers running real ffmpeg and
// real ONNX Runtime with the real model, and worker processes killed with
// SIGKILL mid-stage. Nothing is mocked.
package integration
