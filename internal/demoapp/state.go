// Package demoapp is the contract of examples/demo-app's GET /state, shared
// by the app, 'make demo' and the tests that play the kubelet with it.
package demoapp

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// State is what the demo app reports.
type State struct {
	Reloads   int      `json:"reloads"`
	Revisions []string `json:"revisions"` // from each reload's body
	Greeting  string   `json:"greeting"`
	Reads     int      `json:"reads"`
	ReadErrs  int      `json:"read_errors"`
	FirstErr  string   `json:"first_error,omitempty"`
}

// Get asks the demo app listening on addr (host:port) for its state.
func Get(addr string) (State, error) {
	var st State
	resp, err := http.Get("http://" + addr + "/state")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /state: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
