# LessonFlow: `make run` starts everything on one machine, `make test` runs every test.
# Both install what is missing first (scripts/setup.sh, idempotent).
SHELL := /bin/bash
GO ?= go
# sqlite and ONNX Runtime bindings need cgo.
export CGO_ENABLED := 1
FUZZTIME ?= 30s
TEST_TIMEOUT ?= 45m

.PHONY: setup build run test test-unit test-integration vet bench bench-recs bench-watermark fuzz clean

setup:
	@bash scripts/setup.sh

build:
	$(GO) build -o bin/lessonflow ./cmd/lessonflow

run: setup build
	bin/lessonflow dev

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

test: setup vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

test-unit: setup
	$(GO) test -count=1 -short ./...

test-integration: setup
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./integration/

# Benchmarks: Go benchmarks of the hot paths, then the side-by-side table
# (pipeline vs plain decode, pipeline classification vs raw session.Run, worker RSS).
bench: setup build
	$(GO) test -run='^$$' -bench=. -benchtime=5x ./media/ ./models/
	LESSONFLOW_BENCH=1 $(GO) test -count=1 -timeout 30m -run='^TestBenchTable$$' -v ./integration/

# Watermark table (opt-in, about 25 minutes on 2 cores): embed/detect cost,
# PSNR/SSIM, bitrate cost, exact payload under each attack, whole-pass ratio.
bench-watermark: setup
	$(GO) test -run='^$$' -bench='Embed1080p|MarkVideo1080p$$|Detect1080p' -benchtime=20x ./watermark/
	LESSONFLOW_BENCH_WATERMARK=1 $(GO) test -count=1 -timeout 50m -run='^TestWatermarkBench$$' -v ./integration/

# Recommendations at 100K lessons x 1024-d through the HTTP API (opt-in, a few
# minutes): once with the default build, once with sqlite-vec's AVX2 kernel,
# once with the catalog in a throwaway PostgreSQL server.
bench-recs: setup
	$(GO) build -o bin/lessonflow ./cmd/lessonflow
	bin/lessonflow bench-recs --label default
	CGO_CFLAGS="-O2 -mavx2 -DSQLITE_VEC_ENABLE_AVX" $(GO) build -o bin/lessonflow-avx2 ./cmd/lessonflow
	bin/lessonflow-avx2 bench-recs --label AVX2
	LESSONFLOW_BENCH_RECS_POSTGRES=1 $(GO) test -count=1 -timeout 30m -run='^TestBenchRecsPostgres$$' -v ./cmd/lessonflow/

# Short fuzzing sessions of every parser and decoder that sees outside input.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseProbe$$' -fuzztime=$(FUZZTIME) ./media/
	$(GO) test -run='^$$' -fuzz='^FuzzParseMetadata$$' -fuzztime=$(FUZZTIME) ./api/
	$(GO) test -run='^$$' -fuzz='^FuzzUploadForm$$' -fuzztime=$(FUZZTIME) ./api/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeEvents$$' -fuzztime=$(FUZZTIME) ./api/
	$(GO) test -run='^$$' -fuzz='^FuzzDetectFrame$$' -fuzztime=$(FUZZTIME) ./watermark/
	$(GO) test -run='^$$' -fuzz='^FuzzDetectImage$$' -fuzztime=$(FUZZTIME) ./watermark/
	$(GO) test -run='^$$' -fuzz='^FuzzParseKeyring$$' -fuzztime=$(FUZZTIME) ./watermark/
	$(GO) test -run='^$$' -fuzz='^FuzzParsePayload$$' -fuzztime=$(FUZZTIME) ./watermark/

clean:
	rm -rf bin
