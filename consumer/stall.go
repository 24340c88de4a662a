package consumer

import (
	"context"
	"time"
)

// stallAfter is how long the pull may stay idle while events are pending.
const stallAfter = 10 * time.Second

// stalled reports whether nothing arrived for stallAfter, nothing is held,
// and the server says events are pending.
func (c *Consumer) stalled(ctx context.Context) bool {
	if time.Since(time.Unix(0, c.lastDispatch.Load())) < stallAfter {
		return false
	}
	c.mu.Lock()
	held := c.inflight
	c.mu.Unlock()
	if held > 0 {
		return false
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := c.sources[0].consumer().Info(ictx)
	return err == nil && info.NumPending > 0
}
