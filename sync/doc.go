// Package sync publishes revisions atomically under a shared root (staging,
// fsync, rename, symlink swap, garbage collection) and runs the loop that
// keeps every source's link pointing at its origin's newest revision.
package sync
