package vectorstore

// These tests run the Milvus adapter against an in-process fake of the
// Milvus gRPC service (over bufconn). They check the calls the adapter
// makes (the schema, index and consistency it asks for, the expressions
// and search parameters it sends) and how it reads canned answers. They do
// NOT check Milvus: whether Milvus accepts these calls, evaluates the
// expressions as intended or searches well is only tested by
// TestMilvusContract against a real server (MILVUS_ADDRESS).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milvus-io/milvus-proto/go-api/v2/commonpb"
	"github.com/milvus-io/milvus-proto/go-api/v2/milvuspb"
	"github.com/milvus-io/milvus-proto/go-api/v2/schemapb"
	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

func TestMilvusFilterExpr(t *testing.T) {
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, ``},
		{Filter{Language: "en"}, `language == "en"`},
		{Filter{LevelMin: 2}, `level >= 2`},
		{Filter{LevelMax: 4}, `level <= 4`},
		{Filter{Language: "pt-BR", LevelMin: 2, LevelMax: 4}, `language == "pt-BR" && level >= 2 && level <= 4`},
		{Filter{ExcludeIDs: []string{"a"}}, `id not in ["a"]`},
		{Filter{Language: "fr", ExcludeIDs: []string{"a", "b"}}, `language == "fr" && id not in ["a", "b"]`},
		{Filter{ExcludeIDs: []string{`a"b`, `c\d`, `e\"f`}}, `id not in ["a\"b", "c\\d", "e\\\"f"]`},
		{Filter{ExcludeIDs: []string{`" || id != "`, `"] || true || id in ["`}}, `id not in ["\" || id != \"", "\"] || true || id in [\""]`},
		{Filter{ExcludeIDs: []string{"日本語", "🎓 x"}}, `id not in ["日本語", "🎓 x"]`},
	} {
		got, err := milvusFilterExpr(c.f)
		if err != nil || got != c.want {
			t.Errorf("milvusFilterExpr(%+v) = %s, %v; want %s", c.f, got, err, c.want)
		}
	}
	for _, f := range []Filter{
		{Language: `en" || id != "`},
		{Language: "EN"},
		{Language: "en\n"},
		{ExcludeIDs: []string{"a\nb"}},
		{ExcludeIDs: []string{"a\x00"}},
		{ExcludeIDs: []string{"\xff"}},
		{ExcludeIDs: []string{""}},
	} {
		if got, err := milvusFilterExpr(f); !errors.Is(err, ErrInvalid) {
			t.Errorf("milvusFilterExpr(%#v) = %s, %v; want ErrInvalid", f, got, err)
		}
	}
}

// Every id the store accepts is quoted so that Milvus (which unquotes like
// strconv.Unquote) reads back exactly that id, and the literal ends where
// it should.
func FuzzMilvusQuote(f *testing.F) {
	for _, s := range []string{"a", `a"b`, `\`, `\"`, `"\\"`, "日本", "x\u2028y", `%s`, `"] || 1 == 1 || id in ["`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if validateID(id) != nil {
			return
		}
		q := milvusQuote(id)
		got, err := strconv.Unquote(q)
		if err != nil || got != id {
			t.Fatalf("Unquote(%s) = %q, %v; want %q", q, got, err, id)
		}
		// No unescaped quote before the closing one.
		inner := q[1 : len(q)-1]
		for i := 0; i < len(inner); i++ {
			switch inner[i] {
			case '\\':
				i++
			case '"':
				t.Fatalf("unescaped quote at %d in %s", i, q)
			}
		}
	})
}

// fakeMilvus implements the RPCs the adapter uses, records the requests
// and answers from a tiny state: the schema and index it was given.
type fakeMilvus struct {
	milvuspb.UnimplementedMilvusServiceServer

	mu       sync.Mutex
	create   []*milvuspb.CreateCollectionRequest
	schema   *schemapb.CollectionSchema
	index    []*milvuspb.CreateIndexRequest
	loads    int
	upserts  []*milvuspb.UpsertRequest
	deletes  []*milvuspb.DeleteRequest
	queries  []*milvuspb.QueryRequest
	searches []*milvuspb.SearchRequest
	// answers to the next Query and Search
	queryAnswer  *milvuspb.QueryResults
	searchAnswer *milvuspb.SearchResults
}

var okStatus = &commonpb.Status{ErrorCode: commonpb.ErrorCode_Success}

func (f *fakeMilvus) Connect(context.Context, *milvuspb.ConnectRequest) (*milvuspb.ConnectResponse, error) {
	return &milvuspb.ConnectResponse{Status: okStatus, ServerInfo: &commonpb.ServerInfo{BuildTags: "fake"}, Identifier: 1}, nil
}

func (f *fakeMilvus) HasCollection(_ context.Context, r *milvuspb.HasCollectionRequest) (*milvuspb.BoolResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &milvuspb.BoolResponse{Status: okStatus, Value: f.schema != nil && f.schema.Name == r.CollectionName}, nil
}

func (f *fakeMilvus) CreateCollection(_ context.Context, r *milvuspb.CreateCollectionRequest) (*commonpb.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s schemapb.CollectionSchema
	if err := proto.Unmarshal(r.Schema, protoadapt.MessageV2Of(&s)); err != nil {
		return nil, err
	}
	f.create = append(f.create, r)
	f.schema = &s
	return okStatus, nil
}

func (f *fakeMilvus) DescribeCollection(_ context.Context, r *milvuspb.DescribeCollectionRequest) (*milvuspb.DescribeCollectionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.schema == nil {
		return &milvuspb.DescribeCollectionResponse{Status: &commonpb.Status{ErrorCode: commonpb.ErrorCode_CollectionNotExists, Reason: "no collection"}}, nil
	}
	return &milvuspb.DescribeCollectionResponse{Status: okStatus, Schema: f.schema, CollectionID: 1,
		CollectionName: f.schema.Name, ConsistencyLevel: commonpb.ConsistencyLevel_Bounded}, nil
}

func (f *fakeMilvus) CreateIndex(_ context.Context, r *milvuspb.CreateIndexRequest) (*commonpb.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = append(f.index, r)
	return okStatus, nil
}

func (f *fakeMilvus) DescribeIndex(_ context.Context, r *milvuspb.DescribeIndexRequest) (*milvuspb.DescribeIndexResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.index) == 0 {
		return &milvuspb.DescribeIndexResponse{Status: &commonpb.Status{ErrorCode: commonpb.ErrorCode_IndexNotExist, Reason: "index not found"}}, nil
	}
	last := f.index[len(f.index)-1]
	return &milvuspb.DescribeIndexResponse{Status: okStatus, IndexDescriptions: []*milvuspb.IndexDescription{{
		IndexName: last.IndexName, FieldName: last.FieldName, Params: last.ExtraParams, State: commonpb.IndexState_Finished,
	}}}, nil
}

func (f *fakeMilvus) LoadCollection(context.Context, *milvuspb.LoadCollectionRequest) (*commonpb.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	return okStatus, nil
}

func (f *fakeMilvus) GetLoadingProgress(context.Context, *milvuspb.GetLoadingProgressRequest) (*milvuspb.GetLoadingProgressResponse, error) {
	return &milvuspb.GetLoadingProgressResponse{Status: okStatus, Progress: 100}, nil
}

func (f *fakeMilvus) Upsert(_ context.Context, r *milvuspb.UpsertRequest) (*milvuspb.MutationResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upserts = append(f.upserts, r)
	ids := r.FieldsData[0].GetScalars().GetStringData().GetData()
	return &milvuspb.MutationResult{Status: okStatus, UpsertCnt: int64(len(ids)), Timestamp: 1,
		IDs: &schemapb.IDs{IdField: &schemapb.IDs_StrId{StrId: &schemapb.StringArray{Data: ids}}}}, nil
}

func (f *fakeMilvus) Delete(_ context.Context, r *milvuspb.DeleteRequest) (*milvuspb.MutationResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, r)
	return &milvuspb.MutationResult{Status: okStatus, Timestamp: 2}, nil
}

func (f *fakeMilvus) Query(_ context.Context, r *milvuspb.QueryRequest) (*milvuspb.QueryResults, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, r)
	return f.queryAnswer, nil
}

func (f *fakeMilvus) Search(_ context.Context, r *milvuspb.SearchRequest) (*milvuspb.SearchResults, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.searches = append(f.searches, r)
	return f.searchAnswer, nil
}

// startFake serves f (with the server options opts) over an in-memory
// connection and returns the client configuration that reaches it.
func startFake(t *testing.T, f *fakeMilvus, opts ...grpc.ServerOption) client.Config {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(opts...)
	milvuspb.RegisterMilvusServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return client.Config{
		Address: "bufnet",
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
		},
	}
}

const fakeDim = 8

func openFake(t *testing.T, cfg client.Config, dim int) (*Milvus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := openMilvus(ctx, cfg, "lessons_fake_model_8", dim)
	if err == nil {
		t.Cleanup(func() { m.Close() })
	}
	return m, err
}

func kv(pairs []*commonpb.KeyValuePair) map[string]string {
	m := map[string]string{}
	for _, p := range pairs {
		m[p.Key] = p.Value
	}
	return m
}

func TestMilvusOpenCalls(t *testing.T) {
	f := &fakeMilvus{}
	cfg := startFake(t, f)
	if _, err := openFake(t, cfg, fakeDim); err != nil {
		t.Fatal(err)
	}

	if len(f.create) != 1 {
		t.Fatalf("%d CreateCollection calls, want 1", len(f.create))
	}
	cr := f.create[0]
	if cr.CollectionName != "lessons_fake_model_8" || cr.ShardsNum != 1 || cr.ConsistencyLevel != commonpb.ConsistencyLevel_Strong {
		t.Fatalf("CreateCollection(name %s, shards %d, consistency %s), want lessons_fake_model_8, 1, Strong",
			cr.CollectionName, cr.ShardsNum, cr.ConsistencyLevel)
	}
	type field struct {
		name    string
		typ     schemapb.DataType
		pk      bool
		partKey bool
		params  map[string]string
	}
	var got []field
	for _, fs := range f.schema.Fields {
		if fs.AutoID {
			t.Errorf("field %s has AutoID", fs.Name)
		}
		got = append(got, field{fs.Name, fs.DataType, fs.IsPrimaryKey, fs.IsPartitionKey, kv(fs.TypeParams)})
	}
	want := []field{
		{"id", schemapb.DataType_VarChar, true, false, map[string]string{"max_length": "512"}},
		{"vector", schemapb.DataType_FloatVector, false, false, map[string]string{"dim": "8"}},
		{"language", schemapb.DataType_VarChar, false, true, map[string]string{"max_length": "140"}},
		{"level", schemapb.DataType_Int64, false, false, map[string]string{}},
		{"published_at", schemapb.DataType_Int64, false, false, map[string]string{}},
		{"popularity", schemapb.DataType_Double, false, false, map[string]string{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("schema fields\n %+v\nwant\n %+v", got, want)
	}
	if f.schema.AutoID || f.schema.EnableDynamicField {
		t.Fatalf("schema AutoID %v, dynamic fields %v; want neither", f.schema.AutoID, f.schema.EnableDynamicField)
	}

	if len(f.index) != 1 {
		t.Fatalf("%d CreateIndex calls, want 1", len(f.index))
	}
	ir := f.index[0]
	p := kv(ir.ExtraParams)
	var hnsw map[string]any
	if err := json.Unmarshal([]byte(p["params"]), &hnsw); err != nil {
		t.Fatalf("index params %q: %v", p["params"], err)
	}
	if ir.FieldName != "vector" || p["index_type"] != "HNSW" || p["metric_type"] != "COSINE" ||
		hnsw["M"] != "16" || hnsw["efConstruction"] != "200" {
		t.Fatalf("CreateIndex(field %s, params %v)", ir.FieldName, p)
	}
	if f.loads != 1 {
		t.Fatalf("%d LoadCollection calls, want 1", f.loads)
	}

	// Opening again creates nothing, checks, and loads (idempotent).
	if _, err := openFake(t, cfg, fakeDim); err != nil {
		t.Fatal(err)
	}
	if len(f.create) != 1 || len(f.index) != 1 || f.loads != 2 {
		t.Fatalf("second open: %d creates, %d indexes, %d loads; want 1, 1, 2", len(f.create), len(f.index), f.loads)
	}
	// The collection holds 8-d vectors: opening it for 16-d is refused.
	if _, err := openFake(t, cfg, 16); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "8-d") {
		t.Fatalf("open at another dimension: %v, want ErrInvalid", err)
	}
	// An index with another metric is refused.
	f.index[0].ExtraParams = []*commonpb.KeyValuePair{{Key: "index_type", Value: "HNSW"}, {Key: "metric_type", Value: "L2"}}
	if _, err := openFake(t, cfg, fakeDim); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "L2") {
		t.Fatalf("open with an L2 index: %v, want ErrInvalid", err)
	}
}

func floatsLE(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func unitVec(i int) []float32 {
	v := make([]float32, fakeDim)
	v[i] = 1
	return v
}

func stringField(name string, data ...string) *schemapb.FieldData {
	return &schemapb.FieldData{FieldName: name, Type: schemapb.DataType_VarChar, Field: &schemapb.FieldData_Scalars{
		Scalars: &schemapb.ScalarField{Data: &schemapb.ScalarField_StringData{StringData: &schemapb.StringArray{Data: data}}}}}
}

func longField(name string, data ...int64) *schemapb.FieldData {
	return &schemapb.FieldData{FieldName: name, Type: schemapb.DataType_Int64, Field: &schemapb.FieldData_Scalars{
		Scalars: &schemapb.ScalarField{Data: &schemapb.ScalarField_LongData{LongData: &schemapb.LongArray{Data: data}}}}}
}

func doubleField(name string, data ...float64) *schemapb.FieldData {
	return &schemapb.FieldData{FieldName: name, Type: schemapb.DataType_Double, Field: &schemapb.FieldData_Scalars{
		Scalars: &schemapb.ScalarField{Data: &schemapb.ScalarField_DoubleData{DoubleData: &schemapb.DoubleArray{Data: data}}}}}
}

func vectorField(name string, dim int, data ...float32) *schemapb.FieldData {
	return &schemapb.FieldData{FieldName: name, Type: schemapb.DataType_FloatVector, Field: &schemapb.FieldData_Vectors{
		Vectors: &schemapb.VectorField{Dim: int64(dim), Data: &schemapb.VectorField_FloatVector{FloatVector: &schemapb.FloatArray{Data: data}}}}}
}

func fieldByName(fds []*schemapb.FieldData, name string) *schemapb.FieldData {
	for _, fd := range fds {
		if fd.FieldName == name {
			return fd
		}
	}
	return nil
}

func TestMilvusWriteCalls(t *testing.T) {
	f := &fakeMilvus{}
	m, err := openFake(t, startFake(t, f), fakeDim)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	published := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	ls := []Lesson{
		{ID: "a", Vector: unitVec(0), Language: "en", Level: 2, PublishedAt: published, Popularity: 3.5},
		{ID: `b"c`, Vector: unitVec(1), Language: "pt-BR", Level: 6, Popularity: 0.25},
	}
	if err := m.Upsert(ctx, ls); err != nil {
		t.Fatal(err)
	}
	if len(f.upserts) != 1 {
		t.Fatalf("%d Upsert calls, want 1", len(f.upserts))
	}
	u := f.upserts[0]
	fd := u.FieldsData
	if u.CollectionName != "lessons_fake_model_8" || u.PartitionName != "" || u.NumRows != 2 {
		t.Fatalf("Upsert(collection %s, partition %q, rows %d)", u.CollectionName, u.PartitionName, u.NumRows)
	}
	if got := fieldByName(fd, "id").GetScalars().GetStringData().GetData(); !slices.Equal(got, []string{"a", `b"c`}) {
		t.Fatalf("ids %q", got)
	}
	vf := fieldByName(fd, "vector").GetVectors()
	if vf.GetDim() != fakeDim || !slices.Equal(vf.GetFloatVector().GetData(), append(unitVec(0), unitVec(1)...)) {
		t.Fatalf("vectors dim %d %v", vf.GetDim(), vf.GetFloatVector().GetData())
	}
	if got := fieldByName(fd, "language").GetScalars().GetStringData().GetData(); !slices.Equal(got, []string{"en", "pt-BR"}) {
		t.Fatalf("languages %q", got)
	}
	if got := fieldByName(fd, "level").GetScalars().GetLongData().GetData(); !slices.Equal(got, []int64{2, 6}) {
		t.Fatalf("levels %v", got)
	}
	if got := fieldByName(fd, "published_at").GetScalars().GetLongData().GetData(); !slices.Equal(got, []int64{published.UnixMilli(), time.Time{}.UnixMilli()}) {
		t.Fatalf("published_at %v", got)
	}
	if got := fieldByName(fd, "popularity").GetScalars().GetDoubleData().GetData(); !slices.Equal(got, []float64{3.5, 0.25}) {
		t.Fatalf("popularity %v", got)
	}

	// Invalid batches never reach the server.
	bad := append(slices.Clone(ls), Lesson{ID: "x", Vector: unitVec(2)[:3], Language: "en"})
	if err := m.Upsert(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Upsert(bad) = %v", err)
	}
	if err := m.Delete(ctx, []string{"a", ""}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Delete(bad) = %v", err)
	}
	if err := m.Upsert(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if len(f.upserts) != 1 || len(f.deletes) != 0 {
		t.Fatalf("%d upserts, %d deletes reached the server; want 1, 0", len(f.upserts), len(f.deletes))
	}

	if err := m.Delete(ctx, []string{"a", `b"c`, `d\`}); err != nil {
		t.Fatal(err)
	}
	if d := f.deletes[0]; d.CollectionName != "lessons_fake_model_8" || d.PartitionName != "" || d.Expr != `id in ["a", "b\"c", "d\\"]` {
		t.Fatalf("Delete(collection %s, partition %q, expr %s)", d.CollectionName, d.PartitionName, d.Expr)
	}
}

func TestMilvusReadCalls(t *testing.T) {
	f := &fakeMilvus{}
	m, err := openFake(t, startFake(t, f), fakeDim)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	strongTS := client.StrongTimestamp

	// Search: expression, parameters, the normalised query; and the answer
	// read back (an excluded id the server should not have sent is dropped).
	f.searchAnswer = &milvuspb.SearchResults{Status: okStatus, Results: &schemapb.SearchResultData{
		NumQueries: 1, TopK: 3, Topks: []int64{3},
		Ids:    &schemapb.IDs{IdField: &schemapb.IDs_StrId{StrId: &schemapb.StringArray{Data: []string{"p", "x", "q"}}}},
		Scores: []float32{0.9, 0.8, -1.0000001},
		FieldsData: []*schemapb.FieldData{
			stringField("language", "pt-BR", "pt-BR", "pt-BR"),
			longField("level", 2, 3, 4),
			longField("published_at", 1000, 2000, 3000),
			doubleField("popularity", 1, 2, 3),
		},
	}}
	query := []float32{0, 2, 0, 0, 0, 0, 0, 0} // not normalised
	hits, err := m.Search(ctx, query, 5, Filter{Language: "pt-BR", LevelMin: 2, LevelMax: 4, ExcludeIDs: []string{"x", `y\z`, "x"}})
	if err != nil {
		t.Fatal(err)
	}
	s := f.searches[0]
	sp := kv(s.SearchParams)
	if s.CollectionName != "lessons_fake_model_8" || len(s.PartitionNames) != 0 ||
		s.Dsl != `language == "pt-BR" && level >= 2 && level <= 4 && id not in ["x", "y\\z"]` ||
		s.DslType != commonpb.DslType_BoolExprV1 || s.Nq != 1 || s.GuaranteeTimestamp != strongTS {
		t.Fatalf("Search(collection %s, partitions %v, dsl %s, type %s, nq %d, guarantee ts %d)",
			s.CollectionName, s.PartitionNames, s.Dsl, s.DslType, s.Nq, s.GuaranteeTimestamp)
	}
	if !slices.Equal(s.OutputFields, []string{"language", "level", "published_at", "popularity"}) {
		t.Fatalf("output fields %v", s.OutputFields)
	}
	var params map[string]any
	if err := json.Unmarshal([]byte(sp["params"]), &params); err != nil {
		t.Fatal(err)
	}
	if sp["anns_field"] != "vector" || sp["topk"] != "5" || sp["metric_type"] != "COSINE" || params["ef"] != float64(64) {
		t.Fatalf("search params %v", sp)
	}
	var pg commonpb.PlaceholderGroup
	if err := proto.Unmarshal(s.PlaceholderGroup, protoadapt.MessageV2Of(&pg)); err != nil {
		t.Fatal(err)
	}
	if len(pg.Placeholders) != 1 || pg.Placeholders[0].Type != commonpb.PlaceholderType_FloatVector ||
		len(pg.Placeholders[0].Values) != 1 || !slices.Equal(floatsLE(pg.Placeholders[0].Values[0]), unitVec(1)) {
		t.Fatalf("placeholder group %v, want one normalised query", &pg)
	}
	want := []Hit{
		{ID: "p", Score: float64(float32(0.9)), Language: "pt-BR", Level: 2, PublishedAt: time.UnixMilli(1000).UTC(), Popularity: 1},
		{ID: "q", Score: -1, Language: "pt-BR", Level: 4, PublishedAt: time.UnixMilli(3000).UTC(), Popularity: 3},
	}
	if !reflect.DeepEqual(hits, want) {
		t.Fatalf("hits\n %+v\nwant\n %+v", hits, want)
	}

	// k sets ef when it is larger; no filter is an empty expression.
	f.searchAnswer = &milvuspb.SearchResults{Status: okStatus, Results: &schemapb.SearchResultData{NumQueries: 1, Topks: []int64{0}}}
	hits, err = m.Search(ctx, query, MaxK, Filter{})
	if err != nil || hits == nil || len(hits) != 0 {
		t.Fatalf("empty search = %v, %v; want an empty slice", hits, err)
	}
	s = f.searches[1]
	if err := json.Unmarshal([]byte(kv(s.SearchParams)["params"]), &params); err != nil {
		t.Fatal(err)
	}
	if s.Dsl != "" || kv(s.SearchParams)["topk"] != "1000" || params["ef"] != float64(MaxK) {
		t.Fatalf("Search(dsl %q, params %v)", s.Dsl, kv(s.SearchParams))
	}
	// Server errors come back wrapped with the collection.
	f.searchAnswer = &milvuspb.SearchResults{Status: &commonpb.Status{ErrorCode: commonpb.ErrorCode_UnexpectedError, Reason: "boom"}}
	if _, err := m.Search(ctx, query, 3, Filter{}); err == nil || !strings.Contains(err.Error(), "search lessons_fake_model_8") ||
		!strings.Contains(err.Error(), "boom") {
		t.Fatalf("Search on a failing server: %v", err)
	}
	// Invalid searches never reach the server.
	if _, err := m.Search(ctx, query, 0, Filter{}); !errors.Is(err, ErrInvalid) || len(f.searches) != 3 {
		t.Fatalf("Search(k=0) = %v after %d calls", err, len(f.searches))
	}

	// Get: one query by id with every field.
	f.queryAnswer = &milvuspb.QueryResults{Status: okStatus, FieldsData: []*schemapb.FieldData{
		stringField("id", `a"b`),
		vectorField("vector", fakeDim, unitVec(3)...),
		stringField("language", "fr"),
		longField("level", 5),
		longField("published_at", 1700000000123),
		doubleField("popularity", 7.25),
	}}
	l, err := m.Get(ctx, `a"b`)
	if err != nil {
		t.Fatal(err)
	}
	wantL := Lesson{ID: `a"b`, Vector: unitVec(3), Language: "fr", Level: 5, PublishedAt: time.UnixMilli(1700000000123).UTC(), Popularity: 7.25}
	if !reflect.DeepEqual(l, wantL) {
		t.Fatalf("Get = %+v, want %+v", l, wantL)
	}
	q := f.queries[0]
	if q.Expr != `id in ["a\"b"]` || q.GuaranteeTimestamp != strongTS ||
		!slices.Equal(q.OutputFields, []string{"id", "vector", "language", "level", "published_at", "popularity"}) {
		t.Fatalf("Get's Query(expr %s, output %v, guarantee ts %d)", q.Expr, q.OutputFields, q.GuaranteeTimestamp)
	}
	// Nothing found: Milvus answers empty columns.
	f.queryAnswer = &milvuspb.QueryResults{Status: okStatus, FieldsData: []*schemapb.FieldData{
		stringField("id"), vectorField("vector", fakeDim), stringField("language"),
		longField("level"), longField("published_at"), doubleField("popularity"),
	}}
	if _, err := m.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}

	// Invalid reads never reach the server.
	nq := len(f.queries)
	if _, err := m.Get(ctx, ""); !errors.Is(err, ErrInvalid) || len(f.queries) != nq {
		t.Fatalf("Get(\"\") = %v after %d queries, want ErrInvalid and none", err, len(f.queries)-nq)
	}

	// Count: count(*) over everything.
	f.queryAnswer = &milvuspb.QueryResults{Status: okStatus, FieldsData: []*schemapb.FieldData{longField("count(*)", 42)}}
	n, err := m.Count(ctx)
	if err != nil || n != 42 {
		t.Fatalf("Count = %d, %v; want 42", n, err)
	}
	q = f.queries[len(f.queries)-1]
	if q.Expr != "" || !slices.Equal(q.OutputFields, []string{"count(*)"}) || q.GuaranteeTimestamp != strongTS {
		t.Fatalf("Count's Query(expr %q, output %v, guarantee ts %d)", q.Expr, q.OutputFields, q.GuaranteeTimestamp)
	}
}

// TestMilvusCredentials: MilvusConfig's token, or user and password, and
// the database named by the address's path reach the server on every call,
// as the metadata Milvus authenticates (base64 of the token or of
// user:password) and routes by.
func TestMilvusCredentials(t *testing.T) {
	for _, c := range []struct {
		name     string
		cfg      MilvusConfig
		auth, db string
	}{
		{"API key", MilvusConfig{Address: "bufnet", Token: "zilliz-api-key"}, "emlsbGl6LWFwaS1rZXk=", ""},
		{"user and password, a database", MilvusConfig{Address: "bufnet/lessons", Username: "lf", Password: "s3cret"}, "bGY6czNjcmV0", "lessons"},
		{"none", MilvusConfig{Address: "bufnet"}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			seen := map[string]bool{}
			record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				md, _ := metadata.FromIncomingContext(ctx)
				mu.Lock()
				seen[strings.Join(md.Get("authorization"), ",")+"|"+strings.Join(md.Get("dbname"), ",")] = true
				mu.Unlock()
				return h(ctx, req)
			}
			fake := startFake(t, &fakeMilvus{}, grpc.UnaryInterceptor(record))
			cfg := c.cfg.client()
			cfg.DialOptions = fake.DialOptions
			if _, err := openFake(t, cfg, fakeDim); err != nil {
				t.Fatal(err)
			}
			want := c.auth + "|" + c.db
			if len(seen) != 1 || !seen[want] {
				t.Fatalf("calls carried %v; want every one to carry %q", seen, want)
			}
		})
	}
}
