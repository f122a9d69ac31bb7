// Package signal tells the application that its configuration changed: an
// HTTP request to each reload URL, with newest-wins mailboxes and backoff,
// and a Unix signal to a process found by name in a shared process
// namespace. New builds both from one Options as one Notifiers.
package signal
