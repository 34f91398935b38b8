package catalog_test

import (
	"path/filepath"
	"testing"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/catalog/catalogtest"
)

func TestSQLiteRecheckContract(t *testing.T) {
	catalogtest.RunRechecks(t, func(t *testing.T) catalogtest.RecheckStore {
		s, err := catalog.OpenSQLite(filepath.Join(t.TempDir(), "catalog.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
