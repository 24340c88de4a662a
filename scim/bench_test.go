package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkCreateUser500 sends POST /Users at 500 requests a second
// (paced, each on its own goroutine) to a server on an embedded JetStream
// server with file storage, and reports the latency's p50 and p99: the
// userName index, the KV write of the record with its event, the publish
// and its PubAck, and the KV write that clears it, per request.
//
//	go test -run '^$' -bench CreateUser500 -benchtime 5000x ./scim
func BenchmarkCreateUser500(b *testing.B) {
	const rate = 500
	f := newFixture(b, issueMapping)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		// The i-th request is due at start + i/rate: a late one is sent at
		// once, so the rate holds on average.
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]any{
				"schemas": []string{userSchema, enterpriseSchema}, "userName": fmt.Sprintf("bench%d@x", i),
				"externalId": fmt.Sprint(1008600001000000 + i), "active": true,
				enterpriseSchema: map[string]any{"department": "Sales"},
			})
			req, _ := http.NewRequest("POST", f.url+"/Users", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", mediaType)
			t0 := time.Now()
			resp, err := client.Do(req)
			lat[i] = time.Since(t0)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != http.StatusCreated {
				mu.Lock()
				failed = append(failed, fmt.Sprint(err, resp))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(failed) > 0 {
		b.Fatalf("%d of %d failed, first: %s", len(failed), b.N, failed[0])
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}
