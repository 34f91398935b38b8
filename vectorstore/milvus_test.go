package vectorstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"

	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/vectorstore/vectorstoretest"
)

// TestMilvusContract runs the contract suite against a real Milvus at
// MILVUS_ADDRESS (host:port or URL; MILVUS_TOKEN or MILVUS_USERNAME and
// MILVUS_PASSWORD when it needs credentials), in throwaway collections it
// drops afterwards.
func TestMilvusContract(t *testing.T) {
	addr := os.Getenv("MILVUS_ADDRESS")
	if addr == "" {
		t.Skip("MILVUS_ADDRESS is not set: no Milvus to test against (milvus_internal_test.go checks the adapter's calls on a fake server)")
	}
	vectorstoretest.Run(t, func(t *testing.T, dim int) vectorstore.Store {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		name := fmt.Sprintf("lessons_vectorstoretest_%d_%d", rand.Uint32(), dim)
		s, err := vectorstore.OpenMilvus(ctx, milvusTestConfig(addr), name, dim)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := client.NewClient(ctx, client.Config{Address: addr, APIKey: os.Getenv("MILVUS_TOKEN"),
				Username: os.Getenv("MILVUS_USERNAME"), Password: os.Getenv("MILVUS_PASSWORD")})
			if err != nil {
				t.Errorf("drop %s: %v", name, err)
				return
			}
			defer c.Close()
			if err := c.DropCollection(ctx, name); err != nil {
				t.Errorf("drop %s: %v", name, err)
			}
		})
		return s
	}, vectorstoretest.MinRecall(0.9))
}

func milvusTestConfig(addr string) vectorstore.MilvusConfig {
	return vectorstore.MilvusConfig{Address: addr, Token: os.Getenv("MILVUS_TOKEN"),
		Username: os.Getenv("MILVUS_USERNAME"), Password: os.Getenv("MILVUS_PASSWORD")}
}
