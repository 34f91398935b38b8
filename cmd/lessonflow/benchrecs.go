package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lessonflow/lessonflow/api"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/recommend"
	"github.com/lessonflow/lessonflow/vectorstore"
)

// runBenchRecs is `lessonflow bench-recs` (`make bench-recs`): the issue's
// recommendation targets measured side by side in one run, on the embedded
// store, through the real HTTP API on loopback. The catalogue and users come
// from the generator of eval-recs (recsgen.go); stores live in /dev/shm so
// seeding is fast, and the vector file is memory-mapped either way.
func runBenchRecs(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench-recs", flag.ContinueOnError)
	lessons := fs.Int("lessons", 100_000, "lessons to index")
	dim := fs.Int("dim", 1024, "vector dimension")
	users := fs.Int("users", 2000, "users with histories")
	events := fs.Int("events", 20, "events per user")
	samples := fs.Int("samples", 300, "sequential requests per latency row")
	rate := fs.Int("rate", 300, "offered load of the throughput run (requests/s)")
	duration := fs.Duration("duration", 10*time.Second, "length of the throughput run")
	inflight := fs.Int("inflight", 64, "most requests in flight in the throughput run (the load generator's bound)")
	label := fs.String("label", "", "build label for the table (e.g. default, AVX2)")
	clusters := fs.Int("clusters", vectorstore.DefaultSQLiteVecOptions.Clusters, "most IVF lists of the embedded store (1: none)")
	probe := fs.Int("probe", vectorstore.DefaultSQLiteVecOptions.Probe, "most IVF lists scanned per search")
	margin := fs.Float64("probe-margin", vectorstore.DefaultSQLiteVecOptions.ProbeMargin, "scan a further list when its squared distance is within 1+margin of the nearest's (negative: always --probe lists)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the throughput run (server and load generator) to this file")
	postgres := fs.String("postgres", "", "keep the catalog in this empty PostgreSQL database (a DSN) instead of SQLite")
	if err := fs.Parse(args); err != nil {
		return err
	}
	now := time.Now().UTC()
	fmt.Printf("bench-recs %s: %d lessons x %d-d, %d users x %d events, GOMAXPROCS %d\n", *label, *lessons, *dim, *users, *events, runtime.GOMAXPROCS(0))
	g := generate(7, *lessons, *dim, 200, *users, *events, now)

	dir, err := scratchDir("lessonflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cat, err := openBenchCatalog(ctx, dir, *postgres, g.lessons)
	if err != nil {
		return err
	}
	defer cat.Close()
	collection := vectorstore.CollectionName("bench", *dim)
	opts := vectorstore.DefaultSQLiteVecOptions
	opts.Clusters, opts.Probe, opts.ProbeMargin = *clusters, *probe, *margin
	vs, err := vectorstore.OpenSQLiteVecOptions(dir, collection, *dim, opts)
	if err != nil {
		return err
	}
	build, err := indexLessons(ctx, vs, g.lessons)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	var all []catalog.Event
	for _, u := range g.users {
		all = append(all, u.events...)
	}
	if err := recordEvents(ctx, cat, all); err != nil {
		return err
	}

	// Reload: close the store, reopen it, answer a first search.
	if err := vs.Close(); err != nil {
		return err
	}
	reloadStart := time.Now()
	if vs, err = vectorstore.OpenSQLiteVecOptions(dir, collection, *dim, opts); err != nil {
		return err
	}
	defer vs.Close()
	if _, err := vs.Search(ctx, g.lessons[0].vector, 10, vectorstore.Filter{Language: "en"}); err != nil {
		return err
	}
	reload := time.Since(reloadStart)

	const key = "bench-app-key-0123456789"
	srv := &api.Server{Catalog: cat, Keys: map[string]string{key: api.RoleApp}, Events: cat,
		Recs: &recommend.Engine{Vectors: vs, Catalog: cat}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *inflight, MaxConnsPerHost: *inflight}, Timeout: 30 * time.Second}

	get := func(path string) (time.Duration, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		var body struct {
			Items []recommend.Item `json:"items"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != http.StatusOK || err != nil {
			return d, fmt.Errorf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		if len(body.Items) == 0 {
			return d, fmt.Errorf("GET %s: no items", path)
		}
		return d, nil
	}
	// Users who speak "en", the biggest language (40% of the lessons): the
	// slowest filtered query.
	var en []genUser
	for _, u := range g.users {
		if u.language == "en" && len(u.events) > 0 {
			en = append(en, u)
		}
	}
	if len(en) == 0 {
		return errors.New("no en users generated")
	}
	recPath := func(i int, q string) string {
		u := en[i%len(en)]
		return fmt.Sprintf("/v1/users/%s/recommendations?limit=10%s", u.id, strings.ReplaceAll(q, "{level}", fmt.Sprint(u.level)))
	}
	sequential := func(q string) (p50, p99 time.Duration, err error) {
		var ds []time.Duration
		for i := range *samples {
			d, err := get(recPath(i, q))
			if err != nil {
				return 0, 0, err
			}
			ds = append(ds, d)
		}
		return percentile(ds, 50), percentile(ds, 99), nil
	}
	// Warm up connections and the page cache.
	for i := range 20 {
		if _, err := get(recPath(i, "&language=en")); err != nil {
			return err
		}
	}
	langP50, langP99, err := sequential("&language=en")
	if err != nil {
		return err
	}
	lvlP50, lvlP99, err := sequential("&language=en&level_min={level}&level_max={level}")
	if err != nil {
		return err
	}
	allP50, allP99, err := sequential("")
	if err != nil {
		return err
	}

	// Throughput: an open-loop generator offering `rate` requests/s of the
	// language-filtered kind, never more than `inflight` at once; a request
	// that finds no free slot waits for one (and counts as late).
	var (
		wg            sync.WaitGroup
		okN, errN     atomic.Int64
		late          atomic.Int64
		unsent        int
		mu            sync.Mutex
		loadDs        []time.Duration
		firstErr      error
		slots         = make(chan struct{}, *inflight)
		interval      = time.Second / time.Duration(*rate)
		total         = int(duration.Seconds() * float64(*rate))
		throughputBeg = time.Now()
	)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	for i := range total {
		// The run lasts `duration`: what could not start by then is unsent.
		if time.Since(throughputBeg) > *duration {
			unsent = total - i
			break
		}
		due := throughputBeg.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case slots <- struct{}{}:
		default:
			late.Add(1)
			slots <- struct{}{}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			d, err := get(recPath(i, "&language=en"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errN.Add(1)
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			okN.Add(1)
			loadDs = append(loadDs, d)
		}()
	}
	wg.Wait()
	elapsed := time.Since(throughputBeg)
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	achieved := float64(okN.Load()) / elapsed.Seconds()

	// Recall@10 of the store's search against exact float search in Go,
	// on the profiles of the en users, with the seen lessons excluded.
	byID := map[string]*genLesson{}
	for i := range g.lessons {
		byID[g.lessons[i].id] = &g.lessons[i]
	}
	var recall float64
	queries := min(200, len(en))
	for _, u := range en[:queries] {
		sig := recommend.Signals(u.events, nil, now, recommend.Defaults.HalfLife)
		vecs := map[string][]float32{}
		seen := map[string]bool{}
		var exclude []string
		for _, e := range u.events {
			if !seen[e.LessonID] {
				seen[e.LessonID] = true
				exclude = append(exclude, e.LessonID)
			}
			vecs[e.LessonID] = byID[e.LessonID].vector
		}
		p := recommend.ProfileVector(sig, vecs)
		if p == nil {
			p = byID[u.events[0].LessonID].vector
		}
		hits, err := vs.Search(ctx, p, 10, vectorstore.Filter{Language: "en", ExcludeIDs: exclude})
		if err != nil {
			return err
		}
		exact := exactTop(g.lessons, p, "en", seen, 10)
		want := map[string]bool{}
		for _, id := range exact {
			want[id] = true
		}
		var hit int
		for _, h := range hits {
			if want[h.ID] {
				hit++
			}
		}
		recall += float64(hit) / float64(len(exact))
	}
	recall /= float64(queries)
	rss, hwm := procMemory()
	quant, err := vs.Quantization(ctx)
	if err != nil {
		return err
	}

	sort.Slice(loadDs, func(i, j int) bool { return loadDs[i] < loadDs[j] })
	catName := "SQLite"
	if *postgres != "" {
		catName = "PostgreSQL"
	}
	fmt.Printf("\n| measure (%s build, %d lessons x %d-d, catalog in %s, %d cores) | measured | target |\n|---|---|---|\n", *label, *lessons, *dim, catName, runtime.NumCPU())
	fmt.Printf("| recommendation, language filter (en = 40%%), p50 / p99 | %s / %s | ≤ 5 ms / ≤ 20 ms |\n", ms(langP50), ms(langP99))
	fmt.Printf("| recommendation, language + level filter, p50 / p99 | %s / %s | |\n", ms(lvlP50), ms(lvlP99))
	fmt.Printf("| recommendation, unfiltered, p50 / p99 | %s / %s | p99 ≤ 50 ms |\n", ms(allP50), ms(allP99))
	fmt.Printf("| throughput: offered %d/s for %s (≤ %d in flight), language filter | %.0f req/s, %d errors, %d late starts, %d unsent, p50 %s p99 %s | ≥ 300 req/s, 0 errors |\n",
		*rate, *duration, *inflight, achieved, errN.Load(), late.Load(), unsent, ms(percentile(loadDs, 50)), ms(percentile(loadDs, 99)))
	fmt.Printf("| recall@10 vs exact float search (%d profiles, en, seen excluded) | %.3f | ≥ 0.98 |\n", queries, recall)
	fmt.Printf("| index build (%d upserts of %d) | %s | ≤ 60 s |\n", (*lessons+vectorstore.MaxBatch-1)/vectorstore.MaxBatch, vectorstore.MaxBatch, build.Round(10*time.Millisecond))
	fmt.Printf("| reload after restart (open + first search) | %s | ≤ 5 s |\n", ms(reload))
	fmt.Printf("| RSS now / peak (VmRSS / VmHWM, includes the mapped vector file) | %s / %s | reported |\n", rss, hwm)
	fmt.Printf("| quantisation: bit[%d] codes centred on the mean of %d vectors (generation %d), %d IVF lists (up to %d scanned, margin %g), max(%d, %d × (k + excluded)) candidates rescored | | |\n\n",
		*dim, quant.FittedCount, quant.Generation, quant.Lists, min(quant.Probe, max(1, quant.Lists)), quant.ProbeMargin, quant.MinCandidates, quant.Rescore)
	if firstErr != nil {
		fmt.Printf("first error under load: %v\n", firstErr)
	}
	return nil
}

// openBenchCatalog opens the bench's catalog, in the PostgreSQL database dsn
// names or else in a SQLite file in dir, and seeds it with the lessons.
func openBenchCatalog(ctx context.Context, dir, dsn string, lessons []genLesson) (catalog.Backend, error) {
	if dsn != "" {
		cat, err := catalog.OpenPostgres(ctx, dsn)
		if err != nil {
			return nil, err
		}
		if err := seedCatalog(ctx, "pgx", dsn, lessons); err != nil {
			cat.Close()
			return nil, fmt.Errorf("seed catalog: %w", err)
		}
		return cat, nil
	}
	path := filepath.Join(dir, "catalog.db")
	cat, err := catalog.OpenSQLite(path)
	if err != nil {
		return nil, err
	}
	if err := seedCatalog(ctx, "sqlite3", sqliteSeedDSN(path), lessons); err != nil {
		cat.Close()
		return nil, fmt.Errorf("seed catalog: %w", err)
	}
	return cat, nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// procMemory reads this process's VmRSS and VmHWM.
func procMemory() (rss, hwm string) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?", "?"
	}
	rss, hwm = "?", "?"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		var kb int64
		fmt.Sscan(f[1], &kb)
		switch f[0] {
		case "VmRSS:":
			rss = fmt.Sprintf("%d MiB", kb/1024)
		case "VmHWM:":
			hwm = fmt.Sprintf("%d MiB", kb/1024)
		}
	}
	return rss, hwm
}
