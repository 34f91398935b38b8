package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/config"
)

// apiClient talks to a LessonFlow API for the upload and status commands.
type apiClient struct {
	base, token string
	http        *http.Client
}

func newClient(cfg config.Config, role string) (*apiClient, error) {
	base := os.Getenv("LESSONFLOW_API_URL")
	if base == "" {
		base = "http://" + cfg.HTTPAddr
	}
	tok := os.Getenv("LESSONFLOW_API_KEY")
	if tok == "" {
		// `lessonflow dev` keeps its generated keys here.
		keys := cfg.APIKeys
		if b, err := os.ReadFile(cfg.Path("dev-api-keys")); keys == "" && err == nil {
			keys = strings.TrimSpace(string(b))
		}
		parsed, _ := config.ParseAPIKeys(keys)
		for t, r := range parsed.Roles {
			if r == role || (tok == "" && r == "admin") {
				tok = t
			}
		}
	}
	if tok == "" {
		return nil, errors.New("no API key: set LESSONFLOW_API_KEY (or run `lessonflow dev`, which generates keys)")
	}
	return &apiClient{base: strings.TrimRight(base, "/"), token: tok, http: &http.Client{}}, nil
}

func (c *apiClient) do(req *http.Request, out any) (int, error) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			return resp.StatusCode, fmt.Errorf("%s (HTTP %d, %s)", e.Error.Message, resp.StatusCode, e.Error.Code)
		}
		return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(body, out)
	}
	return resp.StatusCode, nil
}

// progress draws an upload progress bar on stderr.
type progress struct {
	r          io.Reader
	done, size int64
	last       time.Time
	start      time.Time
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if time.Since(p.last) > 100*time.Millisecond || err == io.EOF {
		p.last = time.Now()
		frac := float64(p.done) / float64(max(p.size, 1))
		bar := strings.Repeat("#", int(frac*30)) + strings.Repeat(".", 30-int(frac*30))
		rate := float64(p.done) / max(time.Since(p.start).Seconds(), 0.001) / 1e6
		fmt.Fprintf(os.Stderr, "\rupload [%s] %3.0f%%  %.1f/%.1f MB  %.1f MB/s", bar, frac*100, float64(p.done)/1e6, float64(p.size)/1e6, rate)
	}
	return n, err
}

func runUpload(ctx context.Context, args []string) error {
	var title, desc, lang, tags, teacher string
	var level int
	var wait bool
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("upload", flag.ContinueOnError)
	fs.StringVar(&title, "title", "", "lesson title (default: the file name)")
	fs.StringVar(&desc, "description", "", "lesson description")
	fs.IntVar(&level, "level", 1, "audience level 1-6")
	fs.StringVar(&lang, "language", "en", "BCP 47 language tag")
	fs.StringVar(&tags, "tags", "", "comma-separated tags")
	fs.StringVar(&teacher, "teacher", "teacher-1", "teacher id")
	fs.BoolVar(&wait, "wait", false, "follow the pipeline until a decision")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory holding dev API keys")
	// Flags may come after the file name.
	var file string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		if file != "" {
			return errors.New("upload takes one FILE")
		}
		file, args = fs.Arg(0), fs.Args()[1:]
	}
	if file == "" {
		return errors.New("usage: lessonflow upload FILE [--title T] [--level N] [--language L] [--tags a,b] [--teacher ID] [--wait]")
	}
	if title == "" {
		title = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	c, err := newClient(cfg, "app")
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fields := [][2]string{{"title", title}, {"description", desc}, {"level", fmt.Sprint(level)},
			{"language", lang}, {"tags", tags}, {"teacher_id", teacher}}
		for _, kv := range fields {
			if err := mw.WriteField(kv[0], kv[1]); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		part, err := mw.CreateFormFile("file", filepath.Base(file))
		if err == nil {
			_, err = io.Copy(part, &progress{r: f, size: st.Size(), start: time.Now()})
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/videos", pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var created struct{ ID, State string }
	code, err := c.do(req, &created)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	if code == http.StatusOK {
		fmt.Printf("%s already uploaded (state %s)\n", created.ID, created.State)
	} else {
		fmt.Printf("%s accepted\n", created.ID)
	}
	if !wait {
		return nil
	}
	return follow(ctx, c, created.ID)
}

// videoStatus is the part of a video the commands print.
type videoStatus struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Title  string `json:"title"`
	Error  string `json:"error"`
	Stages []struct {
		Name       string     `json:"name"`
		State      string     `json:"state"`
		StartedAt  *time.Time `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
		Error      string     `json:"error"`
		Attempts   int        `json:"attempts"`
	} `json:"stages"`
	Decision *struct {
		Outcome       string `json:"outcome"`
		Reason        string `json:"reason"`
		PolicyVersion string `json:"policy_version"`
		ModelSHA256   string `json:"model_sha256"`
	} `json:"decision"`
}

func (c *apiClient) video(ctx context.Context, id string) (videoStatus, error) {
	var v videoStatus
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/videos/"+id, nil)
	if err != nil {
		return v, err
	}
	_, err = c.do(req, &v)
	return v, err
}

// follow prints stage changes until the video settles: published, blocked,
// waiting for a reviewer, rejected or failed. `approved` is not settled: the
// watermark and index stages still run.
func follow(ctx context.Context, c *apiClient, id string) error {
	seen := map[string]string{}
	for {
		v, err := c.video(ctx, id)
		if err != nil {
			return err
		}
		for _, s := range v.Stages {
			if seen[s.Name] != s.State {
				seen[s.Name] = s.State
				fmt.Printf("  %-15s %-10s%s\n", s.Name, s.State, stageTiming(s.StartedAt, s.FinishedAt, s.Attempts))
			}
		}
		if v.State != string(catalog.StateProcessing) && v.State != string(catalog.StateApproved) {
			printOutcome(v)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func stageTiming(start, end *time.Time, attempts int) string {
	s := ""
	if start != nil && end != nil {
		s = fmt.Sprintf(" %6.2fs", end.Sub(*start).Seconds())
	}
	if attempts > 1 {
		s += fmt.Sprintf(" (attempt %d)", attempts)
	}
	return s
}

func printOutcome(v videoStatus) {
	fmt.Printf("%s: %s\n", v.ID, v.State)
	if v.Error != "" {
		fmt.Printf("  reason: %s\n", v.Error)
	}
	if d := v.Decision; d != nil {
		fmt.Printf("  decision: %s (policy %s)\n  %s\n", d.Outcome, d.PolicyVersion, d.Reason)
	}
}

func runStatus(ctx context.Context, args []string) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return errors.New("usage: lessonflow status ID")
	}
	c, err := newClient(cfg, "reviewer")
	if err != nil {
		return err
	}
	v, err := c.video(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Printf("%s %q\n", v.ID, v.Title)
	for _, s := range v.Stages {
		fmt.Printf("  %-15s %-10s%s %s\n", s.Name, s.State, stageTiming(s.StartedAt, s.FinishedAt, s.Attempts), s.Error)
	}
	printOutcome(v)
	return nil
}
