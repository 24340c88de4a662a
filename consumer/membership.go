package consumer

import (
	"context"
	"crypto/rand"
	"os"
	"slices"
	"strings"
	"time"
)

// beat renews this instance's membership and leases every heartbeat until
// ctx ends. It runs apart from the pull loop, which may wait on a handover.
func (c *Consumer) beat(ctx context.Context) {
	if c.membersKV == nil {
		return
	}
	tk := time.NewTicker(c.opts.Heartbeat)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		c.renewLeases(ctx)
		c.heartbeat(ctx)
	}
}

// heartbeat records this instance in the members bucket and reads who is
// alive: keys expire when an instance stops beating.
func (c *Consumer) heartbeat(ctx context.Context) {
	if c.membersKV == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.membersKV.Put(ctx, "m."+c.opts.InstanceID, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		c.log.Warn("membership heartbeat failed", "err", err)
		return
	}
	lister, err := c.membersKV.ListKeys(ctx)
	if err != nil {
		c.log.Warn("reading members failed", "err", err)
		return
	}
	var ids []string
	for k := range lister.Keys() {
		if id, ok := strings.CutPrefix(k, "m."); ok {
			ids = append(ids, id) // the rest are partition leases
		}
	}
	slices.Sort(ids)
	c.mu.Lock()
	changed := !slices.Equal(ids, c.members)
	c.members = ids
	c.mu.Unlock()
	if changed {
		c.log.Info("instances sharing the stream", "members", ids, "me", c.opts.InstanceID)
	}
}

// leave removes this instance from the members bucket at shutdown, so
// that the others take its partitions at once.
func (c *Consumer) leave() {
	if c.membersKV == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.membersKV.Delete(ctx, "m."+c.opts.InstanceID)
}

// defaultInstanceID is the host name and a random suffix.
func defaultInstanceID() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "kdsync"
	}
	return h + "-" + strings.ToLower(rand.Text()[:6])
}
