package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/catalog"
)

// testCatalog is a real SQLite catalog in a temporary directory, closed
// when the test ends.
func testCatalog(t *testing.T) *catalog.SQLite {
	t.Helper()
	cat, err := catalog.OpenSQLite(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return cat
}

// startServer serves s until the test ends; a Server without a Logger gets
// one that discards, so test output stays readable.
func startServer(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// send does req as the holder of key (no Authorization if key is empty)
// and reads the whole answer.
func send(t *testing.T, key string, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// callRaw sends body (JSON; none if empty) to path and returns the status,
// the answer decoded as a JSON object (nil if it is not one) and its bytes.
func callRaw(t *testing.T, srv *httptest.Server, key, method, path, body string) (int, map[string]any, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, b := send(t, key, req)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out, b
}

// call is callRaw without the answer's bytes.
func call(t *testing.T, srv *httptest.Server, key, method, path, body string) (int, map[string]any) {
	t.Helper()
	code, out, _ := callRaw(t, srv, key, method, path, body)
	return code, out
}
