// Command demo-app is the application side of 'make demo' and of ferry's
// end-to-end tests: it reads its configuration through the link ferry
// publishes, re-reads it continuously to catch torn reads, and serves the
// reload endpoint ferry notifies.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/internal/demoapp"
)

type app struct {
	dir string
	mu  sync.Mutex
	st  demoapp.State
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	dir := flag.String("dir", "", "config directory (ferry's ROOT/NAME)")
	interval := flag.Duration("read-interval", 5*time.Millisecond, "how often to re-read the whole tree")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("[app]   ")

	a := &app{dir: *dir}
	g, err := a.load()
	if err != nil {
		log.Fatalf("cannot read config at start: %v", err)
	}
	a.st.Greeting = g
	log.Printf("started; app.yaml says %q", g)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go a.readLoop(ctx, *interval)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /-/reload", a.reload)
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		json.NewEncoder(w).Encode(a.st)
	})
	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	log.Printf("stopped after %d reloads, %d reads, %d read errors", a.st.Reloads, a.st.Reads, a.st.ReadErrs)
}

func (a *app) reload(w http.ResponseWriter, r *http.Request) {
	var body struct{ Source, Revision, Path string }
	json.NewDecoder(r.Body).Decode(&body)
	g, err := a.load()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	a.st.Reloads++
	a.st.Revisions = append(a.st.Revisions, body.Revision)
	a.st.Greeting = g
	a.mu.Unlock()
	log.Printf("reload #%d: source %s revision %.12s; app.yaml now says %q", a.st.Reloads, body.Source, body.Revision, g)
	fmt.Fprintln(w, "reloaded")
}

// load reads the greeting the way an app would: through the link.
func (a *app) load() (string, error) {
	data, err := os.ReadFile(filepath.Join(a.dir, "app.yaml"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "greeting:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("app.yaml has no greeting")
}

// readLoop resolves the link once per pass and reads every file of the
// tree. A partial tree, or one removed under the reader, shows up as a read
// error; files named token* must all hold the same text.
func (a *app) readLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := readTree(a.dir)
		a.mu.Lock()
		a.st.Reads++
		if err != nil {
			a.st.ReadErrs++
			if a.st.FirstErr == "" {
				a.st.FirstErr = err.Error()
			}
		}
		a.mu.Unlock()
	}
}

func readTree(link string) error {
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return err
	}
	tokens := map[string]bool{}
	var names []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), "token") {
			tokens[string(data)] = true
			names = append(names, d.Name())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(tokens) > 1 {
		sort.Strings(names)
		return fmt.Errorf("torn read: %v hold %d different tokens", names, len(tokens))
	}
	return nil
}
