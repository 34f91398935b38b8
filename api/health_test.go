package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/lessonflow/lessonflow/blob"
)

// brokenBlobs is a blob store whose service does not answer.
type brokenBlobs struct{ blob.Store }

func (brokenBlobs) Stat(context.Context, string) (blob.Info, error) {
	return blob.Info{}, errors.New("dial tcp 10.1.2.3:9000: connection refused")
}

// /healthz checks the catalog, the blob store and Temporal; a dependency
// that fails turns it 503 without showing the error to the anonymous caller.
func TestHealth(t *testing.T) {
	temporal := &mocks.Client{}
	temporal.On("CheckHealth", mock.Anything, mock.Anything).Return(&client.CheckHealthResponse{}, nil)
	for _, tc := range []struct {
		name   string
		blobs  blob.Store
		code   int
		checks map[string]string
	}{
		{"healthy", newFS(t), http.StatusOK, map[string]string{"catalog": "ok", "blobs": "ok", "temporal": "ok"}},
		{"blob store down", brokenBlobs{newFS(t)}, http.StatusServiceUnavailable, map[string]string{"catalog": "ok", "blobs": "unavailable", "temporal": "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, &Server{Catalog: testCatalog(t), Blobs: tc.blobs, Temporal: temporal})
			resp, b := send(t, "", mustRequest(t, srv.URL+"/healthz"))
			var out struct {
				Status string            `json:"status"`
				Checks map[string]string `json:"checks"`
			}
			if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != tc.code {
				t.Fatalf("%d %s (%v)", resp.StatusCode, b, err)
			}
			for k, v := range tc.checks {
				if out.Checks[k] != v {
					t.Errorf("check %s = %q, want %q (%s)", k, out.Checks[k], v, b)
				}
			}
			if strings.Contains(string(b), "10.1.2.3") {
				t.Errorf("health shows the internal error: %s", b)
			}
		})
	}
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// /metrics answers a Prometheus server's key (role metrics) and admins;
// anyone else gets the API's 401 or 403, and a metrics key opens nothing
// but /metrics.
func TestMetricsNeedsKey(t *testing.T) {
	const metricsKey, appKey, adminKey = "metrics-key-0123456789", "app-key-0123456789ab", "admin-key-0123456789"
	srv := startServer(t, &Server{Catalog: testCatalog(t), Blobs: newFS(t),
		Keys: map[string]string{metricsKey: RoleMetrics, appKey: RoleApp, adminKey: RoleAdmin}})
	for _, tc := range []struct {
		key, path string
		code      int
	}{
		{"", "/metrics", http.StatusUnauthorized},
		{"not-a-key-0123456789", "/metrics", http.StatusUnauthorized},
		{appKey, "/metrics", http.StatusForbidden},
		{metricsKey, "/metrics", http.StatusOK},
		{adminKey, "/metrics", http.StatusOK},
		{metricsKey, "/v1/videos", http.StatusForbidden},
	} {
		resp, b := send(t, tc.key, mustRequest(t, srv.URL+tc.path))
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s with key %.6q: %d %s, want %d", tc.path, tc.key, resp.StatusCode, b, tc.code)
			continue
		}
		switch {
		case tc.code == http.StatusOK && !strings.Contains(string(b), "# TYPE lessonflow_http_requests_total counter"):
			t.Errorf("GET %s: no Prometheus exposition: %.200s", tc.path, b)
		case tc.code != http.StatusOK && !strings.Contains(string(b), `"error"`):
			t.Errorf("GET %s: %d without the API's error body: %s", tc.path, resp.StatusCode, b)
		}
	}
}
