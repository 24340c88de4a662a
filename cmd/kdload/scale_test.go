package main

import (
	"strings"
	"testing"
)

func TestParseCounters(t *testing.T) {
	text := `# HELP kdsync_state_reads_total Reads of per-user records from the state bucket (KV).
# TYPE kdsync_state_reads_total counter
kdsync_state_reads_total 1234
kdsync_state_writes_total 2.2e+06
kdsync_state_cache_entries 13000
kdsync_events_finished_total{action="hired",reason="none",result="applied"} 5
kdsync_state_labelled{x="y"} 7
go_goroutines 80
`
	got, err := parseCounters(strings.NewReader(text), "kdsync_state_")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"kdsync_state_reads_total": 1234, "kdsync_state_writes_total": 2.2e6, "kdsync_state_cache_entries": 13000}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, err := parseCounters(strings.NewReader("kdsync_state_reads_total x\n"), "kdsync_state_"); err == nil {
		t.Error("a sample that is not a number was accepted")
	}
}

func TestRSSQuarters(t *testing.T) {
	points := []rssPoint{{1, 10, 20}, {2, 30, 25}, {3, 55, 30}, {4, 80, 31}, {5, 99, 33}}
	if got, want := rssQuarters(points, 100), [4]float64{25, 30, 31, 33}; got != want {
		t.Fatalf("rssQuarters = %v, want %v", got, want)
	}
	if got := rssQuarters(nil, 100); got != [4]float64{} {
		t.Fatalf("no samples: %v", got)
	}
}
