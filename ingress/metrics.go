package ingress

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdsync/kdsync/handlers"
)

// Results of events in kdsync_ingress_events_total, besides the
// handlers.Reason of a refused event.
const (
	resultAccepted    = "accepted"
	resultDuplicate   = "duplicate"
	resultConflict    = "conflict"
	resultUnavailable = "unavailable"
)

// codes are the statuses the ingress answers with.
var codes = []int{http.StatusAccepted, http.StatusMultiStatus, http.StatusBadRequest, http.StatusUnauthorized,
	http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusServiceUnavailable}

// metrics are the ingress's collectors:
//
//   - kdsync_ingress_requests_total{mode,code}: requests answered, by
//     content mode (structured, binary, batch, unknown) and HTTP status;
//   - kdsync_ingress_events_total{result}: events by fate: accepted,
//     duplicate (stored earlier: same source, id and content), conflict
//     (stored earlier under the same source and id with other content),
//     unavailable (not stored: NATS), or the bad-input reason of a refused
//     one;
//   - kdsync_ingress_request_duration_seconds{mode}: time to answer;
//   - kdsync_ingress_auth_failures_total{reason}: refused credentials
//     (missing, bad_token, bad_signature, bad_timestamp, replayed).
type metrics struct {
	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	auth     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kdsync", Subsystem: "ingress", Name: "requests_total",
			Help: "Webhook requests answered, by CloudEvents content mode and HTTP status code.",
		}, []string{"mode", "code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kdsync", Subsystem: "ingress", Name: "events_total",
			Help: "Events received over HTTP, by fate: accepted, duplicate, conflict (same source and id, other content), unavailable (not stored: NATS) or the bad-input reason.",
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kdsync", Subsystem: "ingress", Name: "request_duration_seconds",
			Help:    "Time to answer a webhook request (JetStream acknowledgements included), by content mode.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"mode"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kdsync", Subsystem: "ingress", Name: "auth_failures_total",
			Help: "Webhook requests refused for their credentials, by reason.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.events, m.duration, m.auth} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ingress: registering metrics: %w", err)
		}
	}
	for _, md := range modes {
		m.duration.WithLabelValues(md.String())
		for _, c := range codes {
			m.requests.WithLabelValues(md.String(), strconv.Itoa(c))
		}
	}
	for _, r := range []string{resultAccepted, resultDuplicate, resultConflict, resultUnavailable} {
		m.events.WithLabelValues(r)
	}
	for _, r := range handlers.InputReasons {
		m.events.WithLabelValues(string(r))
	}
	for _, r := range authReasons {
		m.auth.WithLabelValues(r)
	}
	return m, nil
}

func (m *metrics) request(md mode, status int, d time.Duration) {
	if status == 0 {
		status = http.StatusOK
	}
	m.requests.WithLabelValues(md.String(), strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(md.String()).Observe(d.Seconds())
}

func (m *metrics) event(result string) { m.events.WithLabelValues(result).Inc() }

func (m *metrics) authFailure(reason string) { m.auth.WithLabelValues(reason).Inc() }
