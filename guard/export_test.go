package guard

import "time"

// SetClock makes s read the time from now: the window tests move time
// on without waiting.
func (s *Store) SetClock(now func() time.Time) { s.now = now }
