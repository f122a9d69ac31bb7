// Package signal tells the application that its configuration changed: an
// HTTP request to each reload URL and an exec hook, both with newest-wins
// mailboxes and backoff, a Unix signal to a process found by name in a
// shared process namespace, and a touch file. New builds them from one
// Options as one Notifiers.
package signal
