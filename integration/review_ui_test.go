package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/internal/testenv"
)

// chromium finds Debian's chromium (scripts/setup.sh installs it). A missing
// browser fails the test, so CI cannot pass without running it; set
// LESSONFLOW_SKIP_BROWSER=1 to skip it on purpose.
func chromium(t *testing.T) string {
	t.Helper()
	if os.Getenv("LESSONFLOW_SKIP_BROWSER") == "1" {
		t.Skip("LESSONFLOW_SKIP_BROWSER=1: the reviewer page's browser test is skipped")
	}
	for _, name := range []string{os.Getenv("LESSONFLOW_CHROMIUM"), "chromium", "/usr/bin/chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: run `make setup` (it installs Debian's chromium), set LESSONFLOW_CHROMIUM, " +
		"or LESSONFLOW_SKIP_BROWSER=1 to skip this test")
	return ""
}

// artifactsDir is where test artifacts go: $LESSONFLOW_ARTIFACTS, else the
// repository's git-ignored artifacts/ folder.
func artifactsDir(t *testing.T, sub string) string {
	t.Helper()
	dir := os.Getenv("LESSONFLOW_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(), "artifacts")
	}
	dir = filepath.Join(dir, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts a headless Chromium with the flags this closed network
// needs and a fresh profile, driven over the DevTools protocol.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// Start the browser now (without a timeout: it would end the browser),
	// so a broken install fails here with its reason.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// until polls a JavaScript condition in the page.
func until(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond))
}

// TestReviewerPageBlocksInBrowser drives the reviewer page in headless
// Chromium against the real stack: a clip goes to review on real model
// scores (the animation test policy), a reviewer signs in with their key,
// finds the item in the queue, opens it (the timeline, a blurred thumbnail
// that turns sharp on click, the policy that applied), claims it with the
// keyboard, blocks it with a reason code and text, and sees it leave the
// queue. Screenshots are kept as artifacts.
func TestReviewerPageBlocksInBrowser(t *testing.T) {
	ctx := browser(t)
	// The reviewer's key names an account: the page must recognise claims by
	// the name (GET /v1/review/me), not by a hash of the key.
	s := newStack(t, stackOptions{policy: "test-review-animation",
		review: activities.ReviewSettings{Lease: 10 * time.Minute, Deadline: time.Hour},
		names:  map[string]string{reviewerKey: "rita"}})
	code, body := s.upload(appKey, lessonForm(testenv.SharedVideo(t, "Big_Buck_Bunny_1080_10s_2MB.mp4")))
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	videoID := body["id"].(string)
	itemID := ""
	deadline := time.Now().Add(3 * time.Minute)
	for itemID == "" {
		_, list := s.get(reviewerKey, "/v1/review/items?video_id="+videoID)
		items, _ := list["items"].([]any)
		for _, it := range items {
			if m := it.(map[string]any); m["state"] == "pending" {
				itemID = m["id"].(string)
			}
		}
		if time.Now().After(deadline) {
			_, v := s.get(adminKey, "/v1/videos/"+videoID)
			t.Fatalf("no review item for %s: video %v (%v)", videoID, v["state"], v["decision"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, item := s.get(reviewerKey, "/v1/review/items/"+itemID)
	segs, _ := item["evidence"].(map[string]any)["segments"].([]any)
	if len(segs) == 0 || segs[0].(map[string]any)["thumbnail_url"] == nil {
		t.Fatalf("the item has no segment with a thumbnail: %v", item["evidence"])
	}

	dir := artifactsDir(t, "review-ui")
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, png, 0o644); err != nil {
				return err
			}
			t.Logf("screenshot: %s", p)
			return nil
		})
	}
	text := func(id string) string {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(tctx, chromedp.TextContent(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("read #%s: %v", id, err)
		}
		return v
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, steps...); err != nil {
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			status, _ := chromedp.Run(fctx, chromedp.TextContent(chromedp.ID("status")))
			alert, _ := chromedp.Run(fctx, chromedp.TextContent(chromedp.ID("alert")))
			_ = chromedp.Do(fctx, shot("failure.png"))
			t.Fatalf("%s: %v (status %q, alert %q)", what, err, status, alert)
		}
	}
	row := chromedp.CSS(fmt.Sprintf(`#queue-body tr[data-id=%q]`, itemID))

	// A wrong key is refused with a message; the reviewer's key signs in.
	do("refuse an unknown key",
		chromedp.Navigate(s.api.URL+"/review/"),
		chromedp.WaitVisible(chromedp.ID("key")),
		// Anything the page's CSP refuses from here on is a bug.
		chromedp.Evaluate[chromedp.Void](`window.cspViolations = []; document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective + " " + e.blockedURI))`),
		chromedp.SendKeys(chromedp.ID("key"), "not-a-key-0123456789"),
		chromedp.Click(chromedp.ID("signin-btn")),
		until(`!document.getElementById("alert").hidden`))
	if a := text("alert"); !strings.Contains(a, "not known") {
		t.Fatalf("unknown key: alert %q", a)
	}
	do("sign in and see the item in the queue",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("key").value = ""`),
		chromedp.SendKeys(chromedp.ID("key"), reviewerKey),
		chromedp.Click(chromedp.ID("signin-btn")),
		chromedp.WaitVisible(row),
		shot("queue.png"))
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("lessonflow.reviewerKey") + "|" + localStorage.length`))
	if err != nil || stored != reviewerKey+"|0" {
		t.Fatalf("key storage: %q %v", stored, err)
	}

	// Open it with the keyboard (Enter on the selected row), claim with c.
	do("open, claim, unblur",
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.ID("item-view")),
		until(`!document.getElementById("claim-btn").disabled`),
		until(fmt.Sprintf(`document.querySelectorAll("#timeline .seg").length === %d`, len(segs))),
		// Segments sit where they are in the video.
		until(`[...document.querySelectorAll("#timeline .seg")].every((b, i, all) => i === 0 || b.offsetLeft > all[i-1].offsetLeft)`),
		chromedp.KeyEvent("c"),
		until(`!document.getElementById("approve-btn").disabled`),
		// The first thumbnail is blurred and loaded; a click shows it sharp.
		until(`(() => { const i = document.querySelector("#seg-0 img"); return i && i.complete && i.naturalWidth > 0 && i.dataset.sharp === "false"; })()`),
		chromedp.Click(chromedp.CSS("#seg-0 .thumb")),
		until(`(() => { const i = document.querySelector("#seg-0 img"); return i && i.dataset.sharp === "true" && i.complete && i.naturalWidth > 0; })()`),
		until(`document.querySelector("#seg-0 .thumb").getAttribute("aria-pressed") === "true"`),
		until(`document.getElementById("policy-text").textContent.includes("test-review-animation")`),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("policy-box").open = true`),
		shot("item-claimed.png"))
	if meta := text("item-meta"); !strings.Contains(meta, "Claimed by") || !strings.Contains(meta, "you") {
		t.Fatalf("after claim: meta %q", meta)
	}
	if policy := text("policy-text"); !strings.Contains(policy, "review: 0.5") {
		t.Fatalf("policy panel: %q", policy)
	}

	// b opens the block form; a block needs a reason code and text.
	do("block with a reason",
		chromedp.KeyEvent("b"),
		chromedp.WaitVisible(chromedp.ID("block-form")),
		chromedp.SendKeys(chromedp.ID("reason-code"), "off_topic"),
		chromedp.SendKeys(chromedp.ID("reason-text"), "Not a lesson: blocked by the browser test."),
		chromedp.Click(chromedp.ID("block-confirm")),
		chromedp.WaitVisible(chromedp.ID("queue-view")),
		until(fmt.Sprintf(`!document.querySelector(%q)`, string(row))),
		until(`document.getElementById("status").textContent.includes("Blocked")`),
		shot("queue-after-block.png"))
	t.Logf("page says %q", text("status"))
	if v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.cspViolations`)); err != nil || len(v) != 0 {
		t.Errorf("CSP violations: %v %v", v, err)
	}

	// The API agrees: the item is decided by this reviewer, the video blocked.
	_, item = s.get(reviewerKey, "/v1/review/items/"+itemID)
	d, _ := item["decision"].(map[string]any)
	if item["state"] != "decided" || d == nil || d["decision"] != "block" || d["reason_code"] != "off_topic" ||
		d["reviewer"] != "rita" {
		t.Fatalf("item after the page's block: %v", item)
	}
	deadline = time.Now().Add(time.Minute)
	for {
		_, v := s.get(adminKey, "/v1/videos/"+videoID)
		if v["state"] == "blocked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("video is %v after the block", v["state"])
		}
		time.Sleep(200 * time.Millisecond)
	}
}
