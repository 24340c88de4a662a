package service

import (
	"reflect"
	"testing"
	"time"

	"github.com/kdsync/kdsync/consumer"
)

// TestMetricsStatsCarriesEveryFigure: every figure of the consumer's
// Stats reaches metrics' Stats, so that a field added to one and not
// passed on is caught here.
func TestMetricsStatsCarriesEveryFigure(t *testing.T) {
	in := consumer.Stats{Lanes: 1, InFlight: 2, Oldest: 3 * time.Second, GuardHeld: 4, Parked: 5,
		State: consumer.StateStats{Cached: 6, CachedBytes: 7, Hits: 8, Misses: 9, Evictions: 10, Reads: 11, Writes: 12}}
	var check func(path string, v reflect.Value)
	check = func(path string, v reflect.Value) {
		for i := range v.NumField() {
			f, name := v.Field(i), path+v.Type().Field(i).Name
			if f.Kind() == reflect.Struct {
				check(name+".", f)
				continue
			}
			if f.IsZero() {
				t.Errorf("%s is zero", name)
			}
		}
	}
	check("consumer.", reflect.ValueOf(in)) // the input sets every field
	out := metricsStats(in)
	check("metrics.", reflect.ValueOf(out))
	if out.Lanes != 1 || out.Oldest != 3*time.Second || out.State.Writes != 12 || out.State.CachedBytes != 7 {
		t.Errorf("figures moved between fields: %+v", out)
	}
}
