package sync

import (
	"context"
	"fmt"
)

// broadcast wakes every waiter (a long poll, an event stream): the
// channel they wait on is closed, and replaced, after every attempt of
// the loop and every event; they look again.
func (s *Syncer) broadcast() {
	s.changeMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changeMu.Unlock()
}

func (s *Syncer) changedCh() <-chan struct{} {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	return s.changed
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
