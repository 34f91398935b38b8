package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/lessonflow/lessonflow/config"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recheck"
)

const recheckUsage = `usage:
  lessonflow recheck --policy FILE|NAME [--states published,approved,blocked] [--page-size N] [--run-size N] [--wait]
  lessonflow recheck --status ID [--wait]`

// activePolicy is the policy the API shows reviewers; nil (and a warning)
// when it cannot be loaded, which only that page's policy panel notices.
func activePolicy(cfg config.Config) *moderation.Policy {
	p, err := moderation.LoadPolicy(cfg.Policy)
	if err != nil {
		slog.Warn("active policy not shown to reviewers", "policy", cfg.Policy, "error", err)
		return nil
	}
	return p
}

// recheckStatus is what the CLI prints of GET /v1/admin/rechecks/{id}.
type recheckStatus struct {
	ID            string           `json:"id"`
	State         string           `json:"state"`
	PolicyVersion string           `json:"policy_version"`
	Error         string           `json:"error"`
	Progress      recheck.Progress `json:"progress"`
}

// runRecheck starts a re-check batch through the API (admin key), or shows
// one. A FILE is sent as policy text, so the server need not see the file;
// anything else is a built-in policy name the server resolves.
func runRecheck(ctx context.Context, args []string) error {
	var policy, states, status string
	var pageSize, runSize int
	var wait bool
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("recheck", flag.ContinueOnError)
	fs.StringVar(&policy, "policy", "", "policy YAML file (sent as text) or a built-in policy name")
	fs.StringVar(&states, "states", "", "comma-separated video states to walk (default published,approved,blocked)")
	fs.IntVar(&pageSize, "page-size", 0, "videos listed and re-checked side by side (default 20)")
	fs.IntVar(&runSize, "run-size", 0, "videos per workflow run before continue-as-new (default 100)")
	fs.StringVar(&status, "status", "", "show the batch with this id instead of starting one")
	fs.BoolVar(&wait, "wait", false, "follow the batch until it ends")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory holding dev API keys")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || (policy == "") == (status == "") {
		return errors.New(recheckUsage)
	}
	c, err := newClient(cfg, "admin")
	if err != nil {
		return err
	}
	id := status
	if policy != "" {
		body := map[string]any{}
		if text, err := os.ReadFile(policy); err == nil {
			body["policy_yaml"] = string(text)
		} else if strings.ContainsAny(policy, "/\\") || strings.HasSuffix(policy, ".yaml") {
			return fmt.Errorf("read policy: %w", err)
		} else {
			body["policy"] = policy
		}
		if states != "" {
			body["states"] = strings.Split(states, ",")
		}
		if pageSize != 0 {
			body["page_size"] = pageSize
		}
		if runSize != 0 {
			body["run_size"] = runSize
		}
		b, _ := json.Marshal(body)
		req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/admin/rechecks", bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		var started struct {
			ID            string `json:"id"`
			PolicyVersion string `json:"policy_version"`
		}
		if _, err := c.do(req, &started); err != nil {
			return err
		}
		fmt.Printf("%s started: policy %s\n", started.ID, started.PolicyVersion)
		id = started.ID
		if !wait {
			fmt.Printf("follow it with: lessonflow recheck --status %s --wait\n", id)
			return nil
		}
	}
	last := ""
	for {
		var st recheckStatus
		req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/admin/rechecks/"+url.PathEscape(id), nil)
		if err != nil {
			return err
		}
		if _, err := c.do(req, &st); err != nil {
			return err
		}
		p := st.Progress
		line := fmt.Sprintf("%s %s: %d re-checked, %d changed, %d sent to review, %d errors, %d skipped (run %d%s)",
			st.ID, st.State, p.Processed, p.Changed, p.SentToReview, p.Errors, p.Skipped, p.Runs, inState(p.State))
		if line != last {
			fmt.Println(line)
			last = line
		}
		if st.State != "running" || !wait {
			if st.Error != "" {
				fmt.Printf("  error: %s\n", st.Error)
			}
			if st.State != "running" {
				return printChanged(ctx, c, id)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func inState(s string) string {
	if s == "" {
		return ""
	}
	return ", walking " + s
}

// printChanged lists the first page of changed verdicts.
func printChanged(ctx context.Context, c *apiClient, id string) error {
	var page struct {
		Items []struct {
			VideoID      string `json:"video_id"`
			VideoState   string `json:"video_state"`
			OldOutcome   string `json:"old_outcome"`
			NewOutcome   string `json:"new_outcome"`
			ReviewItemID string `json:"review_item_id"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/admin/rechecks/"+url.PathEscape(id)+"/results?changed=true&limit=50", nil)
	if err != nil {
		return err
	}
	if _, err := c.do(req, &page); err != nil {
		return err
	}
	for _, r := range page.Items {
		to := "recorded only"
		if r.ReviewItemID != "" {
			to = "review item " + r.ReviewItemID
		}
		fmt.Printf("  %s (%s): %s -> %s, %s\n", r.VideoID, r.VideoState, r.OldOutcome, r.NewOutcome, to)
	}
	if page.NextCursor != "" {
		fmt.Printf("  … more at /v1/admin/rechecks/%s/results?changed=true\n", id)
	}
	return nil
}
