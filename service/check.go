package service

import (
	"fmt"
	"net"
	"strconv"
)

// CheckAddr reports an address that cannot be listened on: host:port or
// :port, the port a number; empty is none, and fine. name is the setting
// named in the error.
func CheckAddr(name, addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		var p uint64
		if p, err = strconv.ParseUint(port, 10, 16); err == nil && p <= 65535 {
			return nil
		}
	}
	return fmt.Errorf("%s %q: want host:port or :port, e.g. :9090", name, addr)
}

// checkEventSize reports a largest event size out of its range.
func checkEventSize(n int) error {
	if n < 1024 || n > 1<<20 {
		return fmt.Errorf("max-event-size %d: want 1024 to 1048576", n)
	}
	return nil
}

// authMode names how kdsync authenticates to KooDrive, for the log.
func (o *Options) authMode() string {
	switch {
	case o.APIToken != "":
		return "bearer"
	case o.AppID != "":
		return "app"
	}
	return "none"
}
