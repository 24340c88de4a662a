// Package natsembed runs a real NATS server with JetStream inside the
// process, for the demo, the load tool and tests.
package natsembed

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// Host and Port to listen on; Port 0 picks a free port (kept across
	// Restart).
	Host string
	Port int
	// StoreDir holds JetStream's files; required.
	StoreDir string
	// SyncAlways fsyncs every write before acknowledging it.
	SyncAlways bool
	// ServerName, Cluster, ClusterPort and Routes form a cluster.
	ServerName  string
	Cluster     string
	ClusterPort int
	Routes      []string
	// MaxPayload bounds a message; 0 means the server's default (1 MiB).
	MaxPayload int32
	// Logging turns the server's own log on (to stderr).
	Logging bool
	// TLS, when set, makes the server require TLS of its clients with
	// this configuration (certificate, and ClientCAs for mutual TLS).
	TLS *tls.Config
	// Token, or User and Password, make clients authenticate.
	Token    string
	User     string
	Password string
}

// Server is an embedded NATS server.
type Server struct {
	opts Options
	*server.Server
}

// Start runs a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		o.Port = p
	}
	s := &Server{opts: o}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	o := s.opts
	so := &server.Options{
		ServerName: o.ServerName,
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		SyncAlways: o.SyncAlways,
		NoSigs:     true,
		NoLog:      !o.Logging,
		MaxPayload: o.MaxPayload,
	}
	if o.TLS != nil {
		so.TLSConfig = o.TLS.Clone()
		so.TLS = true
		so.TLSVerify = o.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		so.TLSTimeout = 5
	}
	so.Authorization = o.Token
	so.Username, so.Password = o.User, o.Password
	if o.Cluster != "" {
		so.Cluster.Name = o.Cluster
		so.Cluster.Host = o.Host
		so.Cluster.Port = o.ClusterPort
		so.Routes = server.RoutesFromStr(joinComma(o.Routes))
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("natsembed: %w", err)
	}
	if o.Logging {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return errors.New("natsembed: server not ready within 15s")
	}
	s.Server = ns
	return nil
}

// URL is the client URL.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// Stop shuts the server down and waits.
func (s *Server) Stop() {
	if s.Server != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart stops the server and starts it again on the same port and store.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("natsembed: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func joinComma(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}
