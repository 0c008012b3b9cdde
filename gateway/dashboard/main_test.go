package dashboard_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// One browser for the whole test binary; each test opens its own tab.
var (
	browser    context.Context // nil when there is no browser
	browserWhy string          // why there is none
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	path := findBrowser()
	if path == "" {
		browserWhy = "no chromium on PATH (apt-get install -y chromium)"
	} else {
		dir, err := os.MkdirTemp("", "herald-chromium-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
			chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(dir),
			chromedp.WindowSize(1280, 800),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-default-apps", true),
			chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
			chromedp.Flag("disable-background-timer-throttling", true),
			chromedp.Flag("disable-renderer-backgrounding", true),
			chromedp.Flag("force-color-profile", "srgb"),
			chromedp.Flag("hide-scrollbars", true),
		}
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		defer cancelAlloc()
		bctx, cancelBrowser := chromedp.NewContext(actx)
		defer cancelBrowser()
		if err := chromedp.Do(bctx); err != nil { // starts the browser
			browserWhy = fmt.Sprintf("%s does not start: %v", path, err)
		} else {
			browser = bctx
		}
	}
	return redistest.Main(m)
}

func findBrowser() string {
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// needBrowser skips the test without a browser, or fails it when
// HERALD_REQUIRE_BROWSER=1 (the project's test command sets it).
func needBrowser(t *testing.T) {
	t.Helper()
	if browser != nil {
		return
	}
	if os.Getenv("HERALD_REQUIRE_BROWSER") == "1" {
		t.Fatalf("HERALD_REQUIRE_BROWSER=1 but %s", browserWhy)
	}
	t.Skip(browserWhy)
}

type env struct {
	t   *testing.T
	c   *herald.Client
	srv *httptest.Server
}

// Keys of the tests that turn authentication on.
const (
	adminKey  = "admin-secret"
	readerKey = "reader-secret"
)

func withKeys() gateway.Config {
	return gateway.Config{Keys: []gateway.APIKey{
		{Name: "admin", SHA256: gateway.HashKey(adminKey), Publish: []string{"*"}, Subscribe: []string{"*"}, Admin: []string{"*"}},
		{Name: "reader", SHA256: gateway.HashKey(readerKey), Subscribe: []string{"*"}},
	}}
}

// newEnv starts a gateway (with the dashboard) on a loopback test server.
func newEnv(t *testing.T, cfg gateway.Config) *env {
	t.Helper()
	needBrowser(t)
	return newEnvOn(t, cfg, redistest.URL(t))
}

// newEnvOn is newEnv on the Redis at url.
func newEnvOn(t *testing.T, cfg gateway.Config, url string) *env {
	t.Helper()
	needBrowser(t)
	c, err := herald.New(context.Background(), herald.Config{URL: url, Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client = c
	cfg.AllowedHosts = []string{"127.0.0.1", "localhost"} // as herald serve on loopback
	g, err := gateway.New(cfg)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.CloseClientConnections()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
		srv.Close()
		c.Close()
	})
	return &env{t: t, c: c, srv: srv}
}

func (e *env) publish(topic string, ev herald.Event) herald.Position {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := e.c.Publish(ctx, topic, ev)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// tab is one browser tab on the env's server. At the end of the test it
// checks that the page logged no error and that every request it made went
// to the server's origin.
type tab struct {
	t      *testing.T
	ctx    context.Context // bounded: the test's actions run in it
	origin string

	mu       sync.Mutex
	errors   []string
	requests []string
}

func (e *env) tab() *tab {
	t := e.t
	t.Helper()
	tctx, cancelTab := chromedp.NewContext(browser)
	if err := chromedp.Do(tctx, chromedp.EmulateViewport(1280, 800)); err != nil { // opens the tab
		cancelTab()
		t.Fatal(err)
	}
	u, _ := url.Parse(e.srv.URL)
	tb := &tab{t: t, origin: u.Scheme + "://" + u.Host}
	err := chromedp.Listen(tctx, func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			tb.requests = append(tb.requests, ev.Request.URL)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				tb.errors = append(tb.errors, "console."+string(ev.Type)+": "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			tb.errors = append(tb.errors, "exception: "+msg)
		case *log.EventEntryAdded:
			// Network entries are the HTTP errors the page asked for and
			// handles (a 403 says what a key may not do); every other
			// error (CSP violations, scripts) counts.
			if ev.Entry.Level == log.EntryLevelError && ev.Entry.Source != log.EntrySourceNetwork {
				tb.errors = append(tb.errors, "log "+string(ev.Entry.Source)+": "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	})
	if err != nil {
		cancelTab()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tctx, 45*time.Second)
	tb.ctx = ctx
	t.Cleanup(func() {
		cancel()
		cancelTab()
		tb.check()
	})
	return tb
}

// check fails the test for a console error or a request to another origin.
func (tb *tab) check() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, e := range tb.errors {
		tb.t.Errorf("browser console: %s", e)
	}
	if len(tb.requests) == 0 {
		tb.t.Errorf("the tab made no request; the network log is not working")
	}
	for _, r := range tb.requests {
		u, err := url.Parse(r)
		if err != nil || u.Scheme+"://"+u.Host != tb.origin {
			tb.t.Errorf("request to %s leaves the server's origin %s", r, tb.origin)
		}
	}
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// open loads a page of the dashboard (a path with its #fragment).
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(tb.origin + path))
}

// wait polls a JavaScript predicate until it is true, for at most d.
func (tb *tab) wait(d time.Duration, expr string) {
	tb.t.Helper()
	if _, err := chromedp.Run(tb.ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		tb.t.Fatalf("waiting %s for %s: %v", d, expr, err)
	}
}

func eval[T any](tb *tab, expr string, opts ...chromedp.EvaluateOption) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		tb.t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// click clicks the first element matching a CSS selector with the mouse.
func (tb *tab) click(sel string) {
	tb.t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// login types a key into the login field, as a user does.
func (tb *tab) login(key string) {
	tb.t.Helper()
	tb.wait(5*time.Second, `document.getElementById('login').checkVisibility()`)
	tb.do(chromedp.SendKeys(chromedp.ID("key"), key), chromedp.Click(chromedp.CSS("#login button"), chromedp.NodeVisible))
	tb.wait(5*time.Second, `!document.getElementById('login').checkVisibility()`)
}

// shot saves a screenshot to docs/dashboard/NAME.png when
// HERALD_UPDATE_SCREENSHOTS=1 (so a test run leaves the tree clean).
func (tb *tab) shot(name string) {
	tb.t.Helper()
	if os.Getenv("HERALD_UPDATE_SCREENSHOTS") != "1" {
		return
	}
	b, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard", name+".png"), b, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}
