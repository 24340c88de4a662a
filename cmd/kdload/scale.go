package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What kdload measures of growth with the number of users: kdsync's RSS
// over the run, its reads and writes of per-user records, and the NATS
// messages its connection exchanged per event.

// rssPoint is one sample of kdsync's resident memory during a run.
type rssPoint struct {
	Sec      float64 `json:"sec"`
	Outcomes int     `json:"outcomes"`
	RSSMiB   float64 `json:"rssMiB"`
}

// rssNow reads a process's resident memory (VmRSS), in bytes.
func rssNow(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// rssQuarters picks the RSS when a quarter, half, three quarters and all
// of the outcomes were in: growth with the users seen shows as a rising
// row.
func rssQuarters(points []rssPoint, total int) [4]float64 {
	var out [4]float64
	for q := range 4 {
		want := total * (q + 1) / 4
		for _, p := range points {
			if p.Outcomes >= want {
				out[q] = p.RSSMiB
				break
			}
		}
		if out[q] == 0 && len(points) > 0 {
			out[q] = points[len(points)-1].RSSMiB
		}
	}
	return out
}

// writeRSS writes the samples as TSV: seconds, outcomes, RSS in MiB.
func writeRSS(path string, r *Report, points []rssPoint) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# kdload: %d users, %d events, concurrency %d, state cache %s\n", r.Users, r.Events, r.Concurrency, r.StateCache)
	fmt.Fprintln(&b, "sec\toutcomes\trss_mib")
	for _, p := range points {
		fmt.Fprintf(&b, "%.1f\t%d\t%.1f\n", p.Sec, p.Outcomes, p.RSSMiB)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// scrapeState reads kdsync's kdsync_state_* counters from its /metrics.
func scrapeState(ctx context.Context, addr string) (map[string]float64, error) {
	body, err := get(ctx, "http://"+addr+"/metrics")
	if err != nil {
		return nil, err
	}
	return parseCounters(bytes.NewReader(body), "kdsync_state_")
}

// parseCounters reads the unlabelled samples whose names start with prefix
// from Prometheus' text format.
func parseCounters(r io.Reader, prefix string) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", name, err)
		}
		out[name] = v
	}
	return out, sc.Err()
}

// kvWrites is the number of messages ever stored in the state bucket's
// stream (its last sequence): the writes of per-user records, counted by
// the server.
func kvWrites(ctx context.Context, nc *nats.Conn, bucket string) (uint64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// connMsgs sums the messages the server received from and sent to the
// client connections named name.
func connMsgs(s *server.Server, name string) (in, out int64, err error) {
	cz, err := s.Connz(&server.ConnzOptions{Limit: 1 << 16})
	if err != nil {
		return 0, 0, err
	}
	for _, c := range cz.Conns {
		if c.Name == name {
			in += c.InMsgs
			out += c.OutMsgs
		}
	}
	return in, out, nil
}
