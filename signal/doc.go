// Package signal tells the application that its configuration changed: an
// HTTP notify per URL with newest-wins mailboxes and backoff, or a Unix
// signal to a process found by name in a shared process namespace.
package signal
