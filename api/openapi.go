package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI 3 document; a test keeps it equal to routes().
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
