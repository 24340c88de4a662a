package kdsim

import (
	"strconv"
	"testing"
)

// TestStoreKeepsUserIDOrder: users installed in any order are listed in
// UserID order (numeric ids by length, then text), replaced in place, and
// gone once removed.
func TestStoreKeepsUserIDOrder(t *testing.T) {
	s := newStore(nil, "org")
	for _, id := range []string{"30", "4", "200", "11", "4"} {
		s.setLocked(newUserRec(User{UserID: id, ID: "g" + id, Name: "n" + id}))
	}
	s.removeLocked(s.users["11"])
	var got []string
	for _, u := range s.all() {
		got = append(got, u.UserID)
	}
	want := []string{"4", "30", "200"}
	if len(got) != len(want) {
		t.Fatalf("all() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("all() = %v, want %v", got, want)
		}
	}
	b, total := s.page(nil, &filter{}, 1, 1)
	if total != 3 || string(b) != string(s.users["30"].json) {
		t.Errorf("page(offset 1, limit 1) = %s of %d, want user 30 of 3", b, total)
	}
}

// BenchmarkStoreInsert installs new users into a store that holds
// 200,000 already: the cost of a hire at a large tenant.
func BenchmarkStoreInsert(b *testing.B) {
	s := newStore(nil, "org")
	const held = 200_000
	for i := range held {
		id := strconv.Itoa(1_000_000_000 + 2*i)
		s.setLocked(newUserRec(User{UserID: id, ID: "g" + id}))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := strconv.Itoa(1_000_000_001 + 2*(i%held))
		s.setLocked(newUserRec(User{UserID: id, ID: "g" + id}))
		i++
	}
}
