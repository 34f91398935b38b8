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
