// Package models owns ONNX Runtime: the process-wide shared library and
// environment (Init), the embedded model manifests (LoadManifest, Manifests),
// checksum verification of model files (Verify), the exact preprocessing the
// models were validated with (Preprocess), and long-lived sessions that are
// safe for concurrent use (Classifier, Embedder).
//
// Model files are never committed: scripts/setup.sh copies them into
// .tools/models and checks them against the sha256 in manifests/*.json, and
// NewClassifier/NewEmbedder check them again, on the very bytes they load.
//
// Preprocessing is part of the model contract, not a detail: both models were
// checked against their TensorFlow.js originals with RGB input, a squashing
// bilinear resize with align_corners=true to 224x224, values scaled to [0, 1]
// and an NHWC float32 layout (see shared/models/MODELS.md). Changing any of
// those shifts scores, so the tests pin them to reference values.
package models
