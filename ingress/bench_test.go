package ingress

import (
	"bytes"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/kdsync/kdsync/handlers"
)

// BenchmarkStructured posts one structured event per request, from
// parallel clients, to an ingress in front of an embedded JetStream server
// (file storage): the cost of a 202, JetStream's acknowledgement included.
// ns/op is wall time over all clients: 1e9/ns_op is requests per second.
func BenchmarkStructured(b *testing.B) {
	e := newEnv(b, nil)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 clients on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{}
		for pb.Next() {
			i := n.Add(1)
			r := structured(newEvent(fmt.Sprint("bench-", i), handlers.Changed, fmt.Sprintf("10086%010d", i%10000))).bearer(testToken)
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/events", bytes.NewReader(r.body))
			req.Header = r.header
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
