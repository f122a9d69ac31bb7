// Package promkit is the one convention for the metrics of ferry's
// packages: a component takes a prometheus.Registerer (nil: its metrics
// are kept but exported nowhere) and registers with Register, which never
// panics: two components registering the same series on one registry
// share it.
package promkit

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg and returns the collector to use: c, or the
// one already registered under the same description (two Syncers on one
// registry then count into the same series instead of panicking). With a
// nil reg, c is returned unregistered. A collector that clashes with a
// different one under the same name is a programming error, returned.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &already):
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
