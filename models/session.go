package models

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"slices"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrClosed is returned by calls on a closed Classifier or Embedder.
var ErrClosed = errors.New("model session closed")

// Options tunes a session. Zero fields take the defaults.
type Options struct {
	// IntraOpThreads parallelises inside one operator (default 1). One is
	// the default because workers already run several frames/jobs at once;
	// on the 2-vCPU reference box 2 threads had worse medians than 1.
	IntraOpThreads int
	// InterOpThreads parallelises across independent graph nodes (default
	// 1); these MobileNets are a single chain, so more does not help.
	InterOpThreads int
	// BatchSize is the most images per Run (default 8, the size MODELS.md
	// validated). It bounds the input buffer at BatchSize*224*224*3 floats.
	BatchSize int
}

func (o Options) withDefaults() (Options, error) {
	if o.IntraOpThreads < 0 || o.InterOpThreads < 0 || o.BatchSize < 0 {
		return o, fmt.Errorf("negative option in %+v", o)
	}
	if o.IntraOpThreads == 0 {
		o.IntraOpThreads = 1
	}
	if o.InterOpThreads == 0 {
		o.InterOpThreads = 1
	}
	if o.BatchSize == 0 {
		o.BatchSize = 8
	}
	return o, nil
}

// session is the code Classifier and Embedder share: one ORT session with a
// single image input and a single requested output of shape [N, outDim].
//
// One DynamicAdvancedSession serves every call. That is safe concurrently:
// its Run only reads the immutable C session and name arrays, the tensors
// are created per call, and OrtApi::Run is documented thread-safe on one
// session. The lock only stops Close from freeing the session mid-Run.
type session struct {
	m      Manifest
	output string
	outDim int
	inLen  int // floats per preprocessed image
	opts   Options

	mu   sync.RWMutex
	sess *ort.DynamicAdvancedSession // nil once closed

	bufs sync.Pool // *[]float32 holding BatchSize preprocessed images
}

func newSession(m Manifest, modelDir, output string, opts Options) (*session, error) {
	wrap := func(err error) error { return fmt.Errorf("load model %s: %w", m.ID, err) }
	if err := m.Validate(); err != nil {
		return nil, wrap(err)
	}
	out, ok := m.output(output)
	if !ok {
		return nil, wrap(fmt.Errorf("manifest has no %q output", output))
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, wrap(err)
	}
	if err := initialized(); err != nil {
		return nil, wrap(err)
	}

	// Hash the very bytes ORT will parse, so the file cannot change between
	// the check and the load. The models are ~10 MB; ORT keeps its own copy.
	path := filepath.Join(modelDir, m.File)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, wrap(err)
	}
	sum := sha256.Sum256(data)
	if err := checkSum(path, sum[:], m.SHA256); err != nil {
		return nil, wrap(err)
	}
	if err := checkModelIO(data, m, output); err != nil {
		return nil, wrap(err)
	}

	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, wrap(err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
		return nil, wrap(err)
	}
	if err := so.SetInterOpNumThreads(opts.InterOpThreads); err != nil {
		return nil, wrap(err)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{m.Input.Name}, []string{output}, so)
	if err != nil {
		return nil, wrap(err)
	}
	s := &session{
		m:      m.clone(),
		output: output,
		outDim: int(out.Shape[1]),
		inLen:  m.Preprocessing.Width * m.Preprocessing.Height * 3,
		opts:   opts,
		sess:   sess,
	}
	s.bufs.New = func() any {
		b := make([]float32, s.opts.BatchSize*s.inLen)
		return &b
	}
	// ORT plans memory for each input shape on its first run (tens of ms):
	// pay that for every batch size at start-up, not on the first videos.
	zeros := make([]float32, opts.BatchSize*s.inLen)
	for n := 1; n <= opts.BatchSize; n++ {
		if _, err := s.runPreprocessed(zeros, n); err != nil {
			s.close()
			return nil, wrap(fmt.Errorf("warm-up run: %w", err))
		}
	}
	return s, nil
}

// checkModelIO fails when the model's declared input or the requested output
// disagrees with the manifest, instead of at the first Run.
func checkModelIO(data []byte, m Manifest, output string) error {
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return fmt.Errorf("read model inputs/outputs: %w", err)
	}
	match := func(infos []ort.InputOutputInfo, name string, want []int64) error {
		for _, io := range infos {
			if io.Name != name {
				continue
			}
			if io.DataType != ort.TensorElementDataTypeFloat {
				return fmt.Errorf("model %s is %v, manifest says float32", name, io.DataType)
			}
			if !slices.Equal([]int64(io.Dimensions), want) {
				return fmt.Errorf("model %s has shape %v, manifest says %v", name, io.Dimensions, want)
			}
			return nil
		}
		return fmt.Errorf("model has no tensor %q", name)
	}
	if len(ins) != 1 {
		return fmt.Errorf("model has %d inputs, want 1", len(ins))
	}
	if err := match(ins, m.Input.Name, m.Input.Shape); err != nil {
		return err
	}
	o, _ := m.output(output)
	return match(outs, output, o.Shape)
}

// run executes the session on n preprocessed images in batch and writes the
// [n, outDim] result into dst.
func (s *session) run(batch []float32, n int, dst []float32) error {
	if n < 1 || len(batch) < n*s.inLen || len(dst) < n*s.outDim {
		return fmt.Errorf("run %s: %d images need %d input and %d output floats, got %d and %d",
			s.m.ID, n, n*s.inLen, n*s.outDim, len(batch), len(dst))
	}
	p := s.m.Preprocessing
	in, err := ort.NewTensor(ort.NewShape(int64(n), int64(p.Height), int64(p.Width), 3), batch[:n*s.inLen])
	if err != nil {
		return fmt.Errorf("run %s: input tensor: %w", s.m.ID, err)
	}
	defer in.Destroy()
	out, err := ort.NewTensor(ort.NewShape(int64(n), int64(s.outDim)), dst[:n*s.outDim])
	if err != nil {
		return fmt.Errorf("run %s: output tensor: %w", s.m.ID, err)
	}
	defer out.Destroy()

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.sess == nil {
		return fmt.Errorf("run %s: %w", s.m.ID, ErrClosed)
	}
	if err := s.sess.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
		return fmt.Errorf("run %s: %w", s.m.ID, err)
	}
	return nil
}

// runPreprocessed is run with a freshly allocated result.
func (s *session) runPreprocessed(batch []float32, n int) ([]float32, error) {
	dst := make([]float32, max(n, 0)*s.outDim)
	if err := s.run(batch, n, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// infer preprocesses and runs imgs in batches of at most BatchSize, checking
// ctx before each batch, and returns one outDim row per image.
func (s *session) infer(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	for i, img := range imgs {
		if img == nil || img.Bounds().Empty() {
			return nil, fmt.Errorf("image %d is nil or empty", i)
		}
	}
	flat := make([]float32, len(imgs)*s.outDim)
	res := make([][]float32, len(imgs))
	for i := range res {
		res[i] = flat[i*s.outDim : (i+1)*s.outDim : (i+1)*s.outDim]
	}
	if len(imgs) == 0 {
		return res, nil
	}
	bp := s.bufs.Get().(*[]float32)
	defer s.bufs.Put(bp)
	buf := *bp
	for start := 0; start < len(imgs); start += s.opts.BatchSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(s.opts.BatchSize, len(imgs)-start)
		for i := range n {
			Preprocess(imgs[start+i], s.m.Preprocessing, buf[i*s.inLen:(i+1)*s.inLen])
		}
		if err := s.run(buf, n, flat[start*s.outDim:]); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// close frees the ORT session once, waiting for in-flight runs.
func (s *session) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	if err != nil {
		return fmt.Errorf("close model %s: %w", s.m.ID, err)
	}
	return nil
}
