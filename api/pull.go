package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/ferrysync/ferry/sync"
)

// The pull API, for apps that would rather ask than be told: read-only,
// as open as /status (nothing it returns is a secret).
const (
	SourcesPath = "/v1/sources"
	// maxWait bounds a long poll (?wait=); a longer one waits this long.
	maxWait = 60 * time.Second
)

// etag is a revision as an HTTP entity tag.
func etag(rev string) string { return `"` + rev + `"` }

func (h *pull) sources(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"sources": h.s.Status()})
}

// source answers GET /v1/sources/NAME: at once, or, with If-None-Match
// naming the current revision and ?wait=D, when the revision changes or D
// has passed (304). The ETag is the revision.
func (h *pull) source(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	have := strings.Trim(r.Header.Get("If-None-Match"), `"`)
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			http.Error(w, fmt.Sprintf("wait=%q: want a duration such as 30s", v), http.StatusBadRequest)
			return
		}
		wait = min(d, maxWait)
	}
	ctx := r.Context()
	if wait > 0 && have != "" {
		release, ok := park(w, r)
		if !ok {
			return
		}
		defer release()
		// The answer may come late: the server's write bound counts from
		// the end of the request.
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + writeTimeout))
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		cancel() // no wait: look once
	}
	st, _, err := h.s.WaitChange(ctx, name, have)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("ETag", etag(st.Revision))
	if have != "" && st.Revision == have {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// file answers GET /v1/sources/NAME/files/PATH: one file of the
// published revision, for an app that would rather fetch than mount, with
// the revision as its ETag (If-None-Match and ranges as http.ServeContent
// does them). A path out of the revision is refused.
func (h *pull) file(w http.ResponseWriter, r *http.Request) {
	f, rev, err := h.s.OpenFile(r.PathValue("name"), r.PathValue("path"))
	switch {
	case errors.Is(err, sync.ErrOutside):
		http.Error(w, "the path leaves the revision", http.StatusForbidden)
		return
	case errors.Is(err, fs.ErrNotExist):
		http.Error(w, "no such file in the published revision", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, "the file cannot be read", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "the file cannot be read", http.StatusInternalServerError)
		return
	}
	w.Header().Set("ETag", etag(rev))
	http.ServeContent(w, r, path.Base(r.PathValue("path")), fi.ModTime(), f)
}

// pull serves the pull API from the sync loop.
type pull struct{ s Syncer }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
