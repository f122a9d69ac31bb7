// Package kit is what every source backend shares, so that each one
// writes only its protocol: secret files read by one rule (ReadSecret),
// and state files kept one way (StateDir, StateFile). How errors are
// worded, for backends and the rest of ferry alike, is internal/report's.
package kit
