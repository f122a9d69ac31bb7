package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// EventsPath streams the sync loop's events as Server-Sent Events.
const EventsPath = "/v1/events"

// heartbeat is how often an idle event stream says it is alive (a comment
// line), so proxies and clients do not take it for dead.
const heartbeat = 15 * time.Second

// events streams each publish, repair, rejection and rollback as one
// Server-Sent Event ("id", "event" the kind, "data" the JSON). A client
// that reconnects with Last-Event-ID gets what it missed, as far as the
// loop's bounded history reaches; a first connection starts after the
// event ?after= names (the status page's newest), or at the start of the
// history.
func (h *pull) events(w http.ResponseWriter, r *http.Request) {
	after, err := eventCursor(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	release, ok := park(w, r)
	if !ok {
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	// The headers go now: a client learns it is connected before the
	// first event, which may be long in coming.
	rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := rc.Flush(); err != nil {
		return
	}
	for r.Context().Err() == nil {
		// Each write gets the server's bound anew: a stream is long, one
		// write of it is not.
		rc.SetWriteDeadline(time.Now().Add(heartbeat + writeTimeout))
		ctx, cancel := context.WithTimeout(r.Context(), heartbeat)
		evs := h.s.Events(ctx, after)
		cancel()
		if len(evs) == 0 {
			fmt.Fprint(w, ": alive\n\n")
		}
		for _, e := range evs {
			data, _ := json.Marshal(e)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Kind, data)
			after = e.ID
		}
		if err := rc.Flush(); err != nil {
			return // the client went away
		}
	}
}

// eventCursor returns the id of the newest event the client has:
// Last-Event-ID on a reconnect, else ?after=, else none (0).
func eventCursor(r *http.Request) (uint64, error) {
	what, v := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if v == "" {
		what, v = "after", r.URL.Query().Get("after")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want the id of an event", what, v)
	}
	return n, nil
}
