package ingress

import (
	"fmt"
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newReplayCache(3)
	exp := now.Add(time.Minute)
	a, ok := c.claim("a", exp, now)
	if !ok {
		t.Fatal("first claim refused")
	}
	if _, ok := c.claim("a", exp, now); ok {
		t.Fatal("second claim of a taken")
	}
	c.release(a)
	if _, ok := c.claim("a", exp, now); !ok {
		t.Fatal("released id not free")
	}
	// A stale release (of an older claim) does not free the newer one.
	c.release(a)
	if _, ok := c.claim("a", exp, now); ok {
		t.Fatal("stale release freed a newer claim")
	}
	// Expired ids are free again.
	if _, ok := c.claim("a", exp, exp.Add(time.Second)); !ok {
		t.Fatal("expired id still held")
	}
	// The cache stays within its bound, forgetting the oldest first.
	for i := range 10 {
		if _, ok := c.claim(fmt.Sprint("id", i), exp.Add(time.Hour), now); !ok {
			t.Fatalf("claim %d refused", i)
		}
		if n := c.len(); n > 3 {
			t.Fatalf("%d ids held, bound 3", n)
		}
	}
	if _, ok := c.claim("id9", exp, now); ok {
		t.Fatal("newest id forgotten")
	}
	if _, ok := c.claim("id0", exp, now); !ok {
		t.Fatal("oldest id kept past the bound")
	}
}

func TestReplayCacheCompacts(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newReplayCache(10)
	for i := range 5000 {
		c.claim(fmt.Sprint(i), now.Add(time.Minute), now)
	}
	if n := c.len(); n != 10 {
		t.Fatalf("%d held", n)
	}
	if len(c.order) > 2100 {
		t.Fatalf("order grew to %d entries for 10 ids", len(c.order))
	}
}

func TestPercentDecode(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"hris/workday", "hris/workday", true},
		{"Zo%C3%AB", "Zoë", true},
		{"100%25", "100%", true},
		{"a+b", "a+b", true},
		{"%2", "", false},
		{"%zz", "", false},
		{"x%", "", false},
	}
	for _, tc := range cases {
		got, ok := percentDecode(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("percentDecode(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
