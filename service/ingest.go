package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kdsync/kdsync/consumer"
	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/ingress"
)

// IngestOptions configure RunIngest: the webhook ingress on its own,
// without a consumer (kdsync ingest).
type IngestOptions struct {
	NATS consumer.ConnectOptions
	// Ingress is served as Run serves it; its Addr (or Listener) is
	// required.
	Ingress IngressOptions
	// Decoder checks the events as the consumer will (their size limit).
	Decoder handlers.Decoder
	// HTTPAddr serves /metrics, /healthz and /readyz on an address of
	// their own; empty: on the ingress's.
	HTTPAddr string
	Logger   *slog.Logger
}

// Validate reports every configuration problem at once.
func (o *IngestOptions) Validate() error {
	errs := []error{o.NATS.Check(), checkEventSize(o.Decoder.MaxSize),
		CheckAddr("ingress-addr", o.Ingress.Addr), CheckAddr("http-addr", o.HTTPAddr)}
	if o.Ingress.Addr == "" && o.Ingress.Listener == nil {
		errs = append(errs, errors.New("ingress-addr is required"))
	} else {
		errs = append(errs, o.Ingress.validate())
	}
	return errors.Join(errs...)
}

// RunIngest serves the webhook ingress into the stream until ctx ends,
// with the health and metrics endpoints Run serves (ready: NATS
// connected), then lets the requests under way be answered and drains
// the connection.
func RunIngest(ctx context.Context, o IngestOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !o.Ingress.enabled() {
		return errors.New("ingest: the ingress's address is required")
	}
	reg := prometheus.NewRegistry()
	if err := errors.Join(reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	nc, err := consumer.ConnectRetrying(ctx, o.NATS, log.With("component", "nats"), nil)
	if err != nil {
		return err
	}
	defer func() {
		if err := consumer.Drain(nc, 10*time.Second); err != nil {
			log.Warn("draining the NATS connection", "err", err)
		}
	}()
	var h atomic.Pointer[ingress.Handler]
	ready := func() bool { hh := h.Load(); return hh != nil && hh.Ready() }
	ops := opsHandler(Options{Gatherer: reg}, ready)
	var onIngress, httpErr = ops, make(chan error, 1)
	if o.HTTPAddr != "" {
		onIngress = nil
		srv, ln, err := httpServer(Options{Gatherer: reg, HTTPAddr: o.HTTPAddr}, ready)
		if err != nil {
			return err
		}
		go func() { httpErr <- srv.Serve(ln) }()
		log.Info("serving metrics and health", "addr", ln.Addr().String())
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	ing, err := startIngress(ctx, o.Ingress, o.Decoder, nc, reg, log.With("component", "ingress"), onIngress)
	if err != nil {
		return err
	}
	h.Store(ing.h)
	defer ing.stop()
	go ing.checkStream(ctx, func() bool { return true })
	select {
	case <-ctx.Done():
		return nil
	case err := <-ing.errc:
		return fmt.Errorf("ingress: %w", err)
	case err := <-httpErr:
		return fmt.Errorf("http server: %w", err)
	}
}
