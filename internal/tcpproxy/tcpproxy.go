// Package tcpproxy is a tiny in-process TCP proxy for fault-injection
// tests: it listens on a loopback port and forwards every connection to a
// target; Cut closes all connections and refuses new ones (the port is
// closed, so a dial is refused), Restore listens on the same port again.
package tcpproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from its address to a target.
type Proxy struct {
	target string
	addr   string // host:port it listens on, kept across Cut/Restore

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*pair]struct{}
	cut      bool
	closed   bool
	accepted int
	loops    sync.WaitGroup // accept loops and copiers
}

// pair is one proxied connection.
type pair struct {
	client, server net.Conn
	once           sync.Once
}

func (p *pair) close() {
	p.once.Do(func() {
		_ = p.client.Close()
		_ = p.server.Close()
	})
}

// New listens on a free loopback port and forwards to target (host:port).
func New(target string) (*Proxy, error) {
	return Listen("127.0.0.1:0", target)
}

// Listen listens on addr and forwards to target (host:port).
func Listen(addr, target string) (*Proxy, error) {
	if target == "" {
		return nil, errors.New("tcpproxy: target is required")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcpproxy: listen: %w", err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[*pair]struct{}{}}
	p.loops.Add(1)
	go p.accept(ln)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Target is where connections are forwarded.
func (p *Proxy) Target() string { return p.target }

// Conns is the number of connections open now.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Accepted is the number of connections forwarded since the start.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Cut closes every connection and stops listening, so that new dials are
// refused, until Restore. Cutting a cut proxy does nothing.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		return
	}
	p.cut = true
	_ = p.ln.Close()
	for c := range p.conns {
		c.close()
	}
}

// Restore listens on the same address again. Restoring a proxy that is not
// cut does nothing.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut || p.closed {
		return nil
	}
	var ln net.Listener
	var err error
	// The port was just closed by us; the kernel hands it back at once
	// (SO_REUSEADDR), but retry briefly in case it does not.
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("tcpproxy: listen again on %s: %w", p.addr, err)
	}
	p.ln, p.cut = ln, false
	p.loops.Add(1)
	go p.accept(ln)
	return nil
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if !p.cut {
		_ = p.ln.Close()
	}
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.loops.Wait()
	return nil
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.loops.Done()
	for {
		client, err := ln.Accept()
		if err != nil {
			return // listener closed (Cut or Close)
		}
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &pair{client: client, server: server}
		p.mu.Lock()
		if p.cut || p.closed || p.ln != ln {
			p.mu.Unlock()
			c.close()
			continue
		}
		p.conns[c] = struct{}{}
		p.accepted++
		p.loops.Add(2)
		p.mu.Unlock()
		go p.copy(c, c.server, c.client)
		go p.copy(c, c.client, c.server)
	}
}

// copy forwards src to dst until either side fails, then closes both.
func (p *Proxy) copy(c *pair, dst, src net.Conn) {
	defer p.loops.Done()
	_, _ = io.Copy(dst, src)
	c.close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
