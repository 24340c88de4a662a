package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// componentShares reads a CPU profile written by runtime/pprof and returns
// the share of CPU time of each value of the "component" label. The NATS
// server replaces the labels of its stream, consumer and Raft goroutines
// with its own (account, stream, consumer, type): those count as "nats".
// Samples with no label at all (the garbage collector's background
// workers, the scheduler) count as "runtime".
func componentShares(path string) (map[string]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	byLabel, err := cpuByLabel(b, func(labels map[string]string) string {
		if c, ok := labels["component"]; ok {
			return c
		}
		for _, k := range []string{"account", "stream", "consumer", "type"} {
			if _, ok := labels[k]; ok {
				return "nats"
			}
		}
		if len(labels) == 0 {
			return "runtime"
		}
		return "other"
	})
	if err != nil {
		return nil, err
	}
	var total int64
	for _, v := range byLabel {
		total += v
	}
	if total == 0 {
		return nil, errors.New("no samples")
	}
	out := make(map[string]float64, len(byLabel))
	for k, v := range byLabel {
		out[k] += float64(v) / float64(total)
	}
	return out, nil
}

// cpuByLabel sums a profile's CPU time (its "cpu" sample value, or the
// last one) per class that classify gives each sample's string labels.
// The profile is the gzipped
// protocol buffer of github.com/google/pprof/proto/profile.proto; only
// the fields needed here are read.
func cpuByLabel(gz []byte, classify func(labels map[string]string) string) (map[string]int64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	type sample struct {
		values []int64
		labels [][2]int64 // key, str: string table indexes
	}
	var (
		types   []int64 // string index of each sample type's name
		samples []sample
		strs    []string
	)
	err = eachField(b, func(num int, wire int, v uint64, data []byte) error {
		switch {
		case num == 1 && wire == 2: // sample_type
			var t int64
			err := eachField(data, func(num, wire int, v uint64, _ []byte) error {
				if num == 1 && wire == 0 {
					t = int64(v)
				}
				return nil
			})
			types = append(types, t)
			return err
		case num == 2 && wire == 2: // sample
			var s sample
			err := eachField(data, func(num, wire int, v uint64, data []byte) error {
				switch {
				case num == 2 && wire == 0:
					s.values = append(s.values, int64(v))
				case num == 2 && wire == 2: // packed values
					return eachVarint(data, func(v uint64) { s.values = append(s.values, int64(v)) })
				case num == 3 && wire == 2:
					var l [2]int64
					err := eachField(data, func(num, wire int, v uint64, _ []byte) error {
						if wire == 0 && (num == 1 || num == 2) {
							l[num-1] = int64(v)
						}
						return nil
					})
					s.labels = append(s.labels, l)
					return err
				}
				return nil
			})
			samples = append(samples, s)
			return err
		case num == 6 && wire == 2: // string_table
			strs = append(strs, string(data))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	str := func(i int64) string {
		if i < 0 || int(i) >= len(strs) {
			return ""
		}
		return strs[i]
	}
	vi := len(types) - 1
	for i, t := range types {
		if str(t) == "cpu" {
			vi = i
		}
	}
	if vi < 0 {
		return nil, errors.New("profile: no sample types")
	}
	out := map[string]int64{}
	for _, s := range samples {
		if vi >= len(s.values) {
			continue
		}
		labels := make(map[string]string, len(s.labels))
		for _, l := range s.labels {
			labels[str(l[0])] = str(l[1])
		}
		out[classify(labels)] += s.values[vi]
	}
	return out, nil
}

// eachField walks a protocol buffer message: for each field its number,
// wire type, and its varint value (wire type 0) or its bytes (2).
func eachField(b []byte, f func(num, wire int, v uint64, data []byte) error) error {
	for len(b) > 0 {
		tag, n := uvarint(b)
		if n <= 0 {
			return errors.New("profile: bad tag")
		}
		b = b[n:]
		num, wire := int(tag>>3), int(tag&7)
		var v uint64
		var data []byte
		switch wire {
		case 0:
			v, n = uvarint(b)
			if n <= 0 {
				return errors.New("profile: bad varint")
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return errors.New("profile: short fixed64")
			}
			b = b[8:]
		case 2:
			l, n := uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return errors.New("profile: bad length")
			}
			data, b = b[n:n+int(l)], b[n+int(l):]
		case 5:
			if len(b) < 4 {
				return errors.New("profile: short fixed32")
			}
			b = b[4:]
		default:
			return fmt.Errorf("profile: wire type %d", wire)
		}
		if err := f(num, wire, v, data); err != nil {
			return err
		}
	}
	return nil
}

func eachVarint(b []byte, f func(uint64)) error {
	for len(b) > 0 {
		v, n := uvarint(b)
		if n <= 0 {
			return errors.New("profile: bad packed varint")
		}
		f(v)
		b = b[n:]
	}
	return nil
}

// uvarint decodes a base-128 varint; n <= 0 when b holds none.
func uvarint(b []byte) (v uint64, n int) {
	for i, c := range b {
		if i == 10 {
			return 0, -1
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func formatShares(s map[string]float64) string {
	if len(s) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(s))
	slices.SortStableFunc(keys, func(a, b string) int {
		switch {
		case s[a] > s[b]:
			return -1
		case s[a] < s[b]:
			return 1
		}
		return 0
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.0f%%", k, s[k]*100)
	}
	return ": " + strings.Join(parts, ", ")
}

// chunkedProfile takes kdsync's CPU profile from its /debug/pprof/profile
// in back-to-back chunks (the endpoint wants the duration up front), then
// merges them with go tool pprof.
type chunkedProfile struct {
	path   string
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	parts  []string
	err    error
	stopMu sync.Once
}

const profileChunk = 2 // seconds

func profileKdsync(ctx context.Context, addr, path string, progress io.Writer) *chunkedProfile {
	p := &chunkedProfile{path: path, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, profileChunk)
		started := false
		for i := 0; ; {
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			body, err := get(ctx, url)
			if err != nil {
				if !started {
					// kdsync is starting: its HTTP server is not up yet.
					time.Sleep(20 * time.Millisecond)
					continue
				}
				fmt.Fprintf(progress, "kdsync profile chunk: %v\n", err)
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				return
			}
			started = true
			part := fmt.Sprintf("%s.part%03d", path, i)
			i++
			if err := os.WriteFile(part, body, 0o644); err != nil {
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				return
			}
			p.mu.Lock()
			p.parts = append(p.parts, part)
			p.mu.Unlock()
		}
	}()
	return p
}

func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// finish waits for the chunk under way (at most profileChunk seconds past
// the end of the run), then merges the chunks into the profile's path.
func (p *chunkedProfile) finish() error {
	p.stopMu.Do(func() { close(p.stop) })
	<-p.done
	p.mu.Lock()
	parts, err := p.parts, p.err
	p.mu.Unlock()
	if len(parts) == 0 {
		return errors.Join(errors.New("no profile taken"), err)
	}
	var out bytes.Buffer
	cmd := exec.Command("go", append([]string{"tool", "pprof", "-proto"}, parts...)...)
	cmd.Stdout = &out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if rerr := cmd.Run(); rerr != nil {
		return fmt.Errorf("merging %d chunks with go tool pprof (they are kept as %s.part*): %w: %s", len(parts), p.path, rerr, bytes.TrimSpace(stderr.Bytes()))
	}
	if werr := os.WriteFile(p.path, out.Bytes(), 0o644); werr != nil {
		return werr
	}
	for _, part := range parts {
		_ = os.Remove(part)
	}
	return err
}
