package sync

import (
	"context"
	"fmt"
)

// changes wakes those waiting for a source's revision to change: a
// channel closed, and replaced, after every attempt of the loop.
type changes struct {
	ch chan struct{}
}

// broadcast wakes every waiter; they look again.
func (s *Syncer) broadcast() {
	s.changeMu.Lock()
	close(s.changed.ch)
	s.changed.ch = make(chan struct{})
	s.changeMu.Unlock()
}

func (s *Syncer) changedCh() <-chan struct{} {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	return s.changed.ch
}

// WaitChange returns the status of source name once its published
// revision is not rev, or its status as it is when ctx ends (changed
// false): a long poll's answer. It fails only for a source it does not
// know.
func (s *Syncer) WaitChange(ctx context.Context, name, rev string) (st SourceStatus, changed bool, err error) {
	for {
		ch := s.changedCh() // before the look: a change after it wakes us
		st, ok := s.statusOf(name)
		if !ok {
			return SourceStatus{}, false, fmt.Errorf("no source named %q", name)
		}
		if st.Revision != rev {
			return st, true, nil
		}
		select {
		case <-ctx.Done():
			return st, false, nil
		case <-ch:
		}
	}
}

// statusOf is Status of one source.
func (s *Syncer) statusOf(name string) (SourceStatus, bool) {
	for _, st := range s.Status() {
		if st.Name == name {
			return st, true
		}
	}
	return SourceStatus{}, false
}
