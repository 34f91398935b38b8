package main

import (
	"context"
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/client"

	"github.com/lessonflow/lessonflow/config"
	"github.com/lessonflow/lessonflow/models"
	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/workflows"
)

// embedCollection names the vector collection of the configured embedding
// model from its manifest, without loading the model (the API needs the
// name, not ONNX Runtime).
func embedCollection(cfg config.Config) (name string, dim int, err error) {
	m, err := models.LoadManifest(cfg.EmbedModel)
	if err != nil {
		return "", 0, fmt.Errorf("LESSONFLOW_EMBED_MODEL: %w", err)
	}
	for _, o := range m.Outputs {
		if o.Name == "embedding" && len(o.Shape) == 2 && o.Shape[1] > 0 {
			return vectorstore.CollectionName(m.ID, int(o.Shape[1])), int(o.Shape[1]), nil
		}
	}
	return "", 0, fmt.Errorf("LESSONFLOW_EMBED_MODEL: model %s has no [N, dim] embedding output", m.ID)
}

// openVectors opens the configured model's collection: in Milvus when
// MILVUS_ADDRESS is set, else with sqlite-vec in <data dir>/vectors/.
func openVectors(ctx context.Context, cfg config.Config) (vectorstore.Store, error) {
	name, dim, err := embedCollection(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.MilvusAddress != "" {
		slog.Info("lesson vectors in Milvus", "address", cfg.MilvusAddress, "collection", name)
		return vectorstore.OpenMilvus(ctx, vectorstore.MilvusConfig{Address: cfg.MilvusAddress, Token: cfg.MilvusToken,
			Username: cfg.MilvusUsername, Password: cfg.MilvusPassword}, name, dim)
	}
	opts := vectorstore.DefaultSQLiteVecOptions
	opts.Probe, opts.ProbeMargin = cfg.VectorProbe, cfg.VectorProbeMargin
	return vectorstore.OpenSQLiteVecOptions(cfg.Path("vectors"), name, dim, opts)
}

// runReembed starts (or finds running) the workflow that fills the
// configured model's collection with every published video.
func runReembed(ctx context.Context, args []string) error {
	cfg, err := loadConfig("reembed", args, nil)
	if err != nil {
		return err
	}
	name, _, err := embedCollection(cfg)
	if err != nil {
		return err
	}
	c, err := dialTemporal(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.ReembedWorkflowID(name), TaskQueue: cfg.TaskQueue,
	}, workflows.ReembedWorkflowName, workflows.ReembedInput{})
	if err != nil {
		return fmt.Errorf("start re-embed: %w", err)
	}
	fmt.Printf("re-embedding published videos into %s (workflow %s, run %s)\n", name, run.GetID(), run.GetRunID())
	var res workflows.ReembedResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("re-embed: %w", err)
	}
	fmt.Printf("done: %d indexed, %d skipped (no longer approved)\n", res.Indexed, res.Skipped)
	return nil
}
