package vectorstore

// This file is the whole Milvus adapter, on github.com/milvus-io/milvus-sdk-go/v2
// v2.4.2. That SDK's repository is archived; its successor is
// github.com/milvus-io/milvus/client/v2. Moving is a rewrite of this file
// and nothing else: the fake server of milvus_internal_test.go speaks the
// Milvus gRPC protocol, which both SDKs use, not the SDK's API.
//
// go.mod requires google.golang.org/genproto/googleapis/rpc and .../api (the
// split modules, at @latest when this adapter was added) on purpose: the SDK
// still requires the old monolithic google.golang.org/genproto (2022), which
// also contains googleapis/rpc/status, the package Temporal's and our gRPC
// import. With the split modules required, that package resolves to them
// alone; without them Go finds it in two modules ("ambiguous import"). Keep
// them in go.mod while this SDK is used.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"
)

// Milvus is the Store on a Milvus (2.4) collection, for more lessons or more
// query load than one SQLite file serves.
//
// Schema: id VarChar primary key, vector FloatVector(dim), language VarChar
// (the partition key: a language filter searches only the partition its
// language hashes to), level Int64, published_at Int64 (unix ms),
// popularity Double. The vector has an HNSW index (M 16, efConstruction
// 200) with the COSINE metric, so scores are cosine similarities as they
// are for SQLiteVec; search ef is max(64, k).
//
// Consistency is Strong, set on the collection and on every search and
// query. Store promises read-your-writes, and it matters beyond tests: when
// moderation blocks a lesson, a worker deletes its vector and the API
// process must stop recommending it at once. Bounded (Milvus's default)
// would serve it for the staleness window (5 s by default), and Session
// only covers the client that wrote. The cost is latency: a Strong search
// waits until the query nodes have applied every write acknowledged before
// it (not measured: no Milvus server was available).
//
// Milvus has no multi-row transactions. Validation before any call means an
// invalid batch is never sent; a valid batch is one Upsert request, which
// Milvus applies as a whole or, on an error in flight, possibly in part.
// Retrying the same Upsert is then safe: it is keyed by id.
//
// ExcludeIDs go into the search expression (id not in [...]), so no
// over-fetching is needed.
type Milvus struct {
	c          client.Client
	collection string
	dim        int

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Milvus)(nil)

// Field names of the collection.
const (
	milvusID         = "id"
	milvusVector     = "vector"
	milvusLanguage   = "language"
	milvusLevel      = "level"
	milvusPublished  = "published_at"
	milvusPopularity = "popularity"
)

const (
	// milvusIDMaxLen is the VarChar limit of id: 4 x MaxIDLen, since
	// whether Milvus counts max_length in bytes or characters has varied.
	milvusIDMaxLen = 4 * MaxIDLen
	// milvusLangMaxLen: likewise for language.
	milvusLangMaxLen = 4 * MaxLanguageLen
	// One shard serves 1M x 1024-d (4 GiB of vectors); shards buy write
	// throughput, which approvals do not need.
	milvusShards       = 1
	hnswM              = 16
	hnswEfConstruction = 200
	// hnswMinEf is the smallest search ef; ef must be at least k, and more
	// raises recall (measured by vectorstoretest's MinRecall).
	hnswMinEf = 64
)

var milvusOutput = []string{milvusLanguage, milvusLevel, milvusPublished, milvusPopularity}

// MilvusConfig says how to reach a Milvus server.
type MilvusConfig struct {
	// Address is "host:port" or a URL: https:// turns TLS on (port 443 by
	// default) and a path names the database ("https://host/lessons").
	Address string
	// Token is an API key (Zilliz Cloud) or Milvus's "user:password" token;
	// Username and Password are the other way to give the latter.
	Token, Username, Password string
}

func (c MilvusConfig) client() client.Config {
	return client.Config{Address: c.Address, APIKey: c.Token, Username: c.Username, Password: c.Password}
}

// OpenMilvus connects to the Milvus cfg names and opens collection,
// creating it, its index and loading it as needed. An existing collection
// with another schema or metric is refused. ctx bounds the connection and
// the setup.
func OpenMilvus(ctx context.Context, cfg MilvusConfig, collection string, dim int) (*Milvus, error) {
	return openMilvus(ctx, cfg.client(), collection, dim)
}

func openMilvus(ctx context.Context, cfg client.Config, collection string, dim int) (*Milvus, error) {
	if err := ValidCollection(collection); err != nil {
		return nil, fmt.Errorf("open milvus collection %s: %w", collection, err)
	}
	if err := validateDim(dim); err != nil {
		return nil, fmt.Errorf("open milvus collection %s: %w", collection, err)
	}
	c, err := client.NewClient(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open milvus collection %s: connect %s: %w", collection, cfg.Address, err)
	}
	m := &Milvus{c: c, collection: collection, dim: dim}
	if err := m.setup(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("open milvus collection %s: %w", collection, err)
	}
	return m, nil
}

func milvusSchema(collection string, dim int) *entity.Schema {
	return entity.NewSchema().
		WithName(collection).
		WithDescription("LessonFlow lesson vectors (vectorstore)").
		WithAutoID(false).
		WithField(entity.NewField().WithName(milvusID).WithDataType(entity.FieldTypeVarChar).
			WithIsPrimaryKey(true).WithMaxLength(milvusIDMaxLen)).
		WithField(entity.NewField().WithName(milvusVector).WithDataType(entity.FieldTypeFloatVector).
			WithDim(int64(dim))).
		WithField(entity.NewField().WithName(milvusLanguage).WithDataType(entity.FieldTypeVarChar).
			WithMaxLength(milvusLangMaxLen).WithIsPartitionKey(true)).
		WithField(entity.NewField().WithName(milvusLevel).WithDataType(entity.FieldTypeInt64)).
		WithField(entity.NewField().WithName(milvusPublished).WithDataType(entity.FieldTypeInt64)).
		WithField(entity.NewField().WithName(milvusPopularity).WithDataType(entity.FieldTypeDouble))
}

// setup creates what is missing (collection, index), checks what exists,
// and loads the collection. Every step is idempotent, so two processes may
// open a new collection at once.
func (m *Milvus) setup(ctx context.Context) error {
	has, err := m.c.HasCollection(ctx, m.collection)
	if err != nil {
		return fmt.Errorf("has collection: %w", err)
	}
	if !has {
		err := m.c.CreateCollection(ctx, milvusSchema(m.collection, m.dim), milvusShards,
			client.WithConsistencyLevel(entity.ClStrong))
		if err != nil {
			// Someone else may have created it meanwhile.
			if has, herr := m.c.HasCollection(ctx, m.collection); herr != nil || !has {
				return fmt.Errorf("create collection: %w", err)
			}
		}
	}
	coll, err := m.c.DescribeCollection(ctx, m.collection)
	if err != nil {
		return fmt.Errorf("describe collection: %w", err)
	}
	if err := checkMilvusSchema(coll.Schema, m.dim); err != nil {
		return err
	}

	idx, derr := m.c.DescribeIndex(ctx, m.collection, milvusVector)
	if derr == nil && len(idx) > 0 {
		if mt := idx[0].Params()["metric_type"]; mt != string(entity.COSINE) {
			return fmt.Errorf("%w: index on %s has metric %q, want %s", ErrInvalid, milvusVector, mt, entity.COSINE)
		}
	} else {
		// DescribeIndex fails when there is no index; if it failed for
		// another reason, CreateIndex will say so too.
		hnsw, err := entity.NewIndexHNSW(entity.COSINE, hnswM, hnswEfConstruction)
		if err != nil {
			return err
		}
		if err := m.c.CreateIndex(ctx, m.collection, milvusVector, hnsw, false); err != nil {
			return fmt.Errorf("create index: %w (describe index: %v)", err, derr)
		}
	}
	if err := m.c.LoadCollection(ctx, m.collection, false); err != nil {
		return fmt.Errorf("load collection: %w", err)
	}
	return nil
}

// checkMilvusSchema refuses a collection this code did not create: vectors
// of another dimension, or fields it would misread.
func checkMilvusSchema(s *entity.Schema, dim int) error {
	want := map[string]entity.FieldType{
		milvusID: entity.FieldTypeVarChar, milvusVector: entity.FieldTypeFloatVector,
		milvusLanguage: entity.FieldTypeVarChar, milvusLevel: entity.FieldTypeInt64,
		milvusPublished: entity.FieldTypeInt64, milvusPopularity: entity.FieldTypeDouble,
	}
	for _, f := range s.Fields {
		t, ok := want[f.Name]
		if !ok {
			continue
		}
		if f.DataType != t {
			return fmt.Errorf("%w: field %s is %s, want %s", ErrInvalid, f.Name, f.DataType.Name(), t.Name())
		}
		if f.Name == milvusID && !f.PrimaryKey {
			return fmt.Errorf("%w: field %s is not the primary key", ErrInvalid, f.Name)
		}
		if f.Name == milvusVector {
			if d, _ := strconv.Atoi(f.TypeParams[entity.TypeParamDim]); d != dim {
				return fmt.Errorf("%w: collection holds %s-d vectors, want %d", ErrInvalid, f.TypeParams[entity.TypeParamDim], dim)
			}
		}
		delete(want, f.Name)
	}
	for name := range want {
		return fmt.Errorf("%w: collection has no field %s", ErrInvalid, name)
	}
	return nil
}

// Collection returns the collection the store is bound to.
func (m *Milvus) Collection() string { return m.collection }

// Dim returns the dimension of the collection's vectors.
func (m *Milvus) Dim() int { return m.dim }

// Close implements Store. It closes the connection; the collection stays
// loaded for other clients.
func (m *Milvus) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.c.Close() })
	return m.closeErr
}

// strong makes a search or query see every write acknowledged before it.
var strong = client.WithSearchQueryConsistencyLevel(entity.ClStrong)

// Upsert implements Store.
func (m *Milvus) Upsert(ctx context.Context, lessons []Lesson) error {
	if err := validateUpsert(m.dim, lessons); err != nil {
		return fmt.Errorf("upsert %s: %w", m.collection, err)
	}
	if len(lessons) == 0 {
		return nil
	}
	n := len(lessons)
	var (
		ids   = make([]string, n)
		vecs  = make([][]float32, n)
		langs = make([]string, n)
		lvls  = make([]int64, n)
		pubs  = make([]int64, n)
		pops  = make([]float64, n)
	)
	for i, l := range lessons {
		ids[i], vecs[i], langs[i] = l.ID, l.Vector, l.Language
		lvls[i], pubs[i], pops[i] = int64(l.Level), l.PublishedAt.UnixMilli(), l.Popularity
	}
	_, err := m.c.Upsert(ctx, m.collection, "",
		entity.NewColumnVarChar(milvusID, ids),
		entity.NewColumnFloatVector(milvusVector, m.dim, vecs),
		entity.NewColumnVarChar(milvusLanguage, langs),
		entity.NewColumnInt64(milvusLevel, lvls),
		entity.NewColumnInt64(milvusPublished, pubs),
		entity.NewColumnDouble(milvusPopularity, pops))
	if err != nil {
		return fmt.Errorf("upsert %s: %w", m.collection, err)
	}
	return nil
}

// Delete implements Store.
func (m *Milvus) Delete(ctx context.Context, ids []string) error {
	if err := validateIDs(ids); err != nil {
		return fmt.Errorf("delete from %s: %w", m.collection, err)
	}
	if len(ids) == 0 {
		return nil
	}
	expr, err := milvusIDsExpr("in", ids)
	if err != nil {
		return fmt.Errorf("delete from %s: %w", m.collection, err)
	}
	if err := m.c.Delete(ctx, m.collection, "", expr); err != nil {
		return fmt.Errorf("delete from %s: %w", m.collection, err)
	}
	return nil
}

// Get implements Store.
func (m *Milvus) Get(ctx context.Context, id string) (Lesson, error) {
	l, err := m.get(ctx, id)
	if err != nil {
		return Lesson{}, fmt.Errorf("get %q from %s: %w", id, m.collection, err)
	}
	return l, nil
}

func (m *Milvus) get(ctx context.Context, id string) (Lesson, error) {
	expr, err := milvusIDsExpr("in", []string{id}) // validates id
	if err != nil {
		return Lesson{}, err
	}
	rs, err := m.c.Query(ctx, m.collection, nil, expr, append([]string{milvusID, milvusVector}, milvusOutput...), strong)
	if err != nil {
		return Lesson{}, err
	}
	if rs.Len() == 0 {
		return Lesson{}, ErrNotFound
	}
	var vc *entity.ColumnFloatVector
	if err := columnAs(rs, milvusVector, &vc); err != nil {
		return Lesson{}, err
	}
	hits, err := milvusHits(rs, []string{id}, []float32{0})
	if err != nil {
		return Lesson{}, err
	}
	if vc.Len() != 1 {
		return Lesson{}, fmt.Errorf("%d vectors for one id", vc.Len())
	}
	v := vc.Data()[0]
	if len(v) != m.dim {
		return Lesson{}, fmt.Errorf("stored vector has %d values, want %d", len(v), m.dim)
	}
	h := hits[0]
	return Lesson{ID: id, Vector: v, Language: h.Language, Level: h.Level, PublishedAt: h.PublishedAt, Popularity: h.Popularity}, nil
}

// Count implements Store.
func (m *Milvus) Count(ctx context.Context) (int, error) {
	rs, err := m.c.Query(ctx, m.collection, nil, "", []string{"count(*)"}, strong)
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", m.collection, err)
	}
	var c *entity.ColumnInt64
	if err := columnAs(rs, "count(*)", &c); err != nil {
		return 0, fmt.Errorf("count %s: %w", m.collection, err)
	}
	if len(c.Data()) != 1 {
		return 0, fmt.Errorf("count %s: %d values of count(*), want 1", m.collection, len(c.Data()))
	}
	return int(c.Data()[0]), nil
}

// Search implements Store.
func (m *Milvus) Search(ctx context.Context, query []float32, k int, f Filter) ([]Hit, error) {
	req, err := prepareSearch(m.dim, query, k, f)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", m.collection, err)
	}
	expr, err := milvusFilterExpr(req.filter)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", m.collection, err)
	}
	sp, err := entity.NewIndexHNSWSearchParam(max(hnswMinEf, k))
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", m.collection, err)
	}
	res, err := m.c.Search(ctx, m.collection, nil, expr, milvusOutput,
		[]entity.Vector{entity.FloatVector(req.query)}, milvusVector, entity.COSINE, k, sp, strong)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", m.collection, err)
	}
	hits := []Hit{}
	// With no hits Milvus may send no field data at all, which the SDK
	// reports as an error of the (empty) result.
	if len(res) == 0 || res[0].ResultCount == 0 {
		return hits, nil
	}
	r := res[0]
	if r.Err != nil {
		return nil, fmt.Errorf("search %s: %w", m.collection, r.Err)
	}
	idc, ok := r.IDs.(*entity.ColumnVarChar)
	if !ok {
		return nil, fmt.Errorf("search %s: ids are %T, want VarChar", m.collection, r.IDs)
	}
	all, err := milvusHits(r.Fields, idc.Data(), r.Scores)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", m.collection, err)
	}
	for _, h := range all {
		// The expression excluded them already; this guards the contract.
		if _, ok := req.exclude[h.ID]; !ok && len(hits) < k {
			hits = append(hits, h)
		}
	}
	return hits, nil
}

// milvusHits assembles hits from the output columns of a search or query.
func milvusHits(rs client.ResultSet, ids []string, scores []float32) ([]Hit, error) {
	var (
		lang      *entity.ColumnVarChar
		lvl, pub  *entity.ColumnInt64
		pop       *entity.ColumnDouble
		n         = len(ids)
		badLength = func(c entity.Column) bool { return c.Len() != n }
	)
	if err := errors.Join(columnAs(rs, milvusLanguage, &lang), columnAs(rs, milvusLevel, &lvl),
		columnAs(rs, milvusPublished, &pub), columnAs(rs, milvusPopularity, &pop)); err != nil {
		return nil, err
	}
	if len(scores) != n || badLength(lang) || badLength(lvl) || badLength(pub) || badLength(pop) {
		return nil, fmt.Errorf("result columns of unequal lengths (%d ids)", n)
	}
	hits := make([]Hit, n)
	for i := range hits {
		hits[i] = Hit{
			ID:          ids[i],
			Score:       clampScore(float64(scores[i])),
			Language:    lang.Data()[i],
			Level:       int(lvl.Data()[i]),
			PublishedAt: time.UnixMilli(pub.Data()[i]).UTC(),
			Popularity:  pop.Data()[i],
		}
	}
	return hits, nil
}

// columnAs finds column name in rs and checks its type.
func columnAs[C entity.Column](rs client.ResultSet, name string, out *C) error {
	col := rs.GetColumn(name)
	if col == nil {
		return fmt.Errorf("no column %s in the result", name)
	}
	c, ok := col.(C)
	if !ok {
		return fmt.Errorf("column %s is %T, want %T", name, col, *out)
	}
	*out = c
	return nil
}

// milvusFilterExpr builds the boolean expression of a filter ("" for none).
// Nothing of the caller's reaches it unchecked: the language must match the
// BCP 47 pattern, levels are formatted integers, and ids are validated and
// quoted.
func milvusFilterExpr(f Filter) (string, error) {
	var parts []string
	if f.Language != "" {
		if err := validateLanguage(f.Language); err != nil {
			return "", err
		}
		parts = append(parts, milvusLanguage+" == "+milvusQuote(f.Language))
	}
	if f.LevelMin > 0 {
		parts = append(parts, milvusLevel+" >= "+strconv.Itoa(f.LevelMin))
	}
	if f.LevelMax > 0 {
		parts = append(parts, milvusLevel+" <= "+strconv.Itoa(f.LevelMax))
	}
	if len(f.ExcludeIDs) > 0 {
		e, err := milvusIDsExpr("not in", f.ExcludeIDs)
		if err != nil {
			return "", err
		}
		parts = append(parts, e)
	}
	return strings.Join(parts, " && "), nil
}

// milvusIDsExpr is `id in [...]` or `id not in [...]` of valid ids.
func milvusIDsExpr(op string, ids []string) (string, error) {
	var b strings.Builder
	b.WriteString(milvusID + " " + op + " [")
	for i, id := range ids {
		if err := validateID(id); err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(milvusQuote(id))
	}
	b.WriteString("]")
	return b.String(), nil
}

// milvusQuote makes a Milvus string literal of s, which must hold no control
// characters (validateID and validateLanguage ensure it). Milvus unquotes
// double-quoted literals like Go (strconv.Unquote), so escaping the
// backslash and the double quote is enough.
func milvusQuote(s string) string {
	return `"` + milvusEscaper.Replace(s) + `"`
}

var milvusEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
