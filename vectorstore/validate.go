package vectorstore

import (
	"fmt"
	"math"
	"regexp"
	"unicode"
	"unicode/utf8"
)

// The checks below are shared by every backend, so that the same call is
// accepted or rejected whatever stores the vectors.

// errorf returns an error wrapping ErrInvalid.
func errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// languageRe is the API's pattern for BCP 47 tags. It also keeps languages
// safe to put in a Milvus expression.
var languageRe = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)

func validateDim(dim int) error {
	if dim < 1 || dim > MaxDim {
		return errorf("dimension %d, want 1 to %d", dim, MaxDim)
	}
	return nil
}

// validateID accepts 1 to MaxIDLen bytes of valid UTF-8 without control
// characters: no id can then break out of a quoted Milvus string or a log line.
func validateID(id string) error {
	if id == "" {
		return errorf("empty id")
	}
	if len(id) > MaxIDLen {
		return errorf("id of %d bytes, max %d", len(id), MaxIDLen)
	}
	if !utf8.ValidString(id) {
		return errorf("id is not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return errorf("id contains control character %U", r)
		}
	}
	return nil
}

func validateLanguage(lang string) error {
	if len(lang) > MaxLanguageLen || !languageRe.MatchString(lang) {
		return errorf("language %.40q is not a BCP 47 tag such as en or pt-BR", lang)
	}
	return nil
}

func validateVector(v []float32, dim int) error {
	if len(v) != dim {
		return errorf("vector has %d values, want %d", len(v), dim)
	}
	var sum float64
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return errorf("vector value %d is %v", i, x)
		}
		sum += float64(x) * float64(x)
	}
	if norm := math.Sqrt(sum); math.Abs(norm-1) > NormTolerance {
		return errorf("vector is not L2-normalised (norm %.6g)", norm)
	}
	return nil
}

// validateUpsert checks a whole batch before anything is written.
func validateUpsert(dim int, lessons []Lesson) error {
	if len(lessons) > MaxBatch {
		return errorf("batch of %d lessons, max %d", len(lessons), MaxBatch)
	}
	seen := make(map[string]int, len(lessons))
	for i, l := range lessons {
		if err := validateLesson(dim, l); err != nil {
			return fmt.Errorf("lesson %d (id %.40q): %w", i, l.ID, err)
		}
		// Which duplicate would win is backend-specific; refuse to guess.
		if j, ok := seen[l.ID]; ok {
			return fmt.Errorf("lesson %d (id %.40q): %w", i, l.ID, errorf("id already at index %d of the batch", j))
		}
		seen[l.ID] = i
	}
	return nil
}

func validateLesson(dim int, l Lesson) error {
	if err := validateID(l.ID); err != nil {
		return err
	}
	if err := validateVector(l.Vector, dim); err != nil {
		return err
	}
	if err := validateLanguage(l.Language); err != nil {
		return err
	}
	if l.Level < 0 {
		return errorf("negative level %d", l.Level)
	}
	if math.IsNaN(l.Popularity) || math.IsInf(l.Popularity, 0) {
		return errorf("popularity is %v", l.Popularity)
	}
	return nil
}

// validateIDs checks the ids of a Delete.
func validateIDs(ids []string) error {
	if len(ids) > MaxBatch {
		return errorf("batch of %d ids, max %d", len(ids), MaxBatch)
	}
	for i, id := range ids {
		if err := validateID(id); err != nil {
			return fmt.Errorf("id %d (%.40q): %w", i, id, err)
		}
	}
	return nil
}

// search is a validated Search request.
type search struct {
	query   []float32 // L2-normalised copy of the caller's query
	k       int
	filter  Filter              // with ExcludeIDs deduplicated
	exclude map[string]struct{} // the same ids, for dropping them from results
}

func prepareSearch(dim int, query []float32, k int, f Filter) (search, error) {
	if k < 1 || k > MaxK {
		return search{}, errorf("k = %d, want 1 to %d", k, MaxK)
	}
	if len(query) != dim {
		return search{}, errorf("query has %d values, want %d", len(query), dim)
	}
	var sum float64
	for i, x := range query {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return search{}, errorf("query value %d is %v", i, x)
		}
		sum += float64(x) * float64(x)
	}
	norm := math.Sqrt(sum)
	if norm == 0 || math.IsInf(norm, 0) {
		return search{}, errorf("query has norm %v, cannot normalise", norm)
	}
	q := make([]float32, dim)
	for i, x := range query {
		q[i] = float32(float64(x) / norm)
	}
	if f.Language != "" {
		if err := validateLanguage(f.Language); err != nil {
			return search{}, fmt.Errorf("filter: %w", err)
		}
	}
	if f.LevelMin < 0 || f.LevelMax < 0 {
		return search{}, errorf("filter: negative level bound (%d, %d)", f.LevelMin, f.LevelMax)
	}
	if f.LevelMin > 0 && f.LevelMax > 0 && f.LevelMin > f.LevelMax {
		return search{}, errorf("filter: level min %d > max %d", f.LevelMin, f.LevelMax)
	}
	exclude := make(map[string]struct{}, len(f.ExcludeIDs))
	ids := make([]string, 0, len(f.ExcludeIDs))
	for i, id := range f.ExcludeIDs {
		if err := validateID(id); err != nil {
			return search{}, fmt.Errorf("filter: exclude %d (%.40q): %w", i, id, err)
		}
		if _, ok := exclude[id]; !ok {
			exclude[id] = struct{}{}
			ids = append(ids, id)
		}
	}
	if len(ids) > MaxExclude {
		return search{}, errorf("filter: %d ids to exclude, max %d", len(ids), MaxExclude)
	}
	f.ExcludeIDs = ids
	return search{query: q, k: k, filter: f, exclude: exclude}, nil
}

// clampScore keeps rounding from pushing a cosine outside [-1, 1].
func clampScore(s float64) float64 {
	return max(-1, min(1, s))
}
