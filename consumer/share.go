package consumer

// Share returns how many of the stream's partitions this instance holds
// and how many there are: 1 of 1 without partitions. A quota known for the
// whole of kdsync (KDSYNC_API_RATE) is split by it, so that the instances
// together stay within it.
func (c *Consumer) Share() (held, total int) {
	if c.parts.n == 0 {
		return 1, 1
	}
	c.mu.Lock()
	srcs := c.sources
	c.mu.Unlock()
	for _, s := range srcs {
		if s.group != "" && s.held() {
			held++
		}
	}
	return held, c.parts.n
}
