package kdsim_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

// BenchmarkServerSignedCount measures signed GET /users/count round trips
// over loopback: kdapi's signing client and the simulator's verification.
func BenchmarkServerSignedCount(b *testing.B) {
	srv, err := kdsim.New(kdsim.Options{AppID: testAppID, AppSecret: testSecret})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, err := kdapi.NewClient(kdapi.WithBaseURL(ts.URL), kdapi.WithAppAuth(testAppID, testSecret, testUserID), kdapi.WithMaxConns(64))
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.CountUsers(b.Context(), ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkSignedCreateUpdateRoundTrip measures one signed create and one
// signed update of the same user, one after the other, through kdapi's
// client (AppAuth HMAC-SHA256 transport) and the simulator (signature
// verification, validation, store) over loopback: what one hire costs end to
// end. The allocations count both sides, as they share the process; one of
// them is the user id. kdapi's BenchmarkCreateUpdateRoundTrip is the same
// pair against a stub server.
//
//	go test -run '^$' -bench SignedCreateUpdate -benchmem -count 3 ./kdsim
func BenchmarkSignedCreateUpdateRoundTrip(b *testing.B) {
	srv, err := kdsim.New(kdsim.Options{AppID: testAppID, AppSecret: testSecret})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(ts.Close)
	c, err := kdapi.NewClient(kdapi.WithBaseURL(ts.URL), kdapi.WithAppAuth(testAppID, testSecret, testUserID))
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	info := &kdapi.CreateUserInfo{DeptID: deptEng, Role: "1"}
	update := kdapi.UpdateUserRequest{DeptID: kdapi.Ptr(int64(1319678187126486145)), Role: kdapi.Ptr(5), Status: kdapi.Ptr(0)}
	const base = 1008600000029937613
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		id := strconv.FormatInt(base+n, 10) // a new user each time
		n++
		if err := c.CreateUser(ctx, kdapi.CreateUserRequest{UserID: id, ModifyUserInfoReq: info}); err != nil {
			b.Fatal(err)
		}
		if err := c.UpdateUser(ctx, id, update); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := srv.Stats(); st.Creates != n || st.Updates != n || st.AuthFailures != 0 {
		b.Fatalf("stats %+v after %d pairs", st, n)
	}
}

// BenchmarkServerSignedGetUser is BenchmarkServerSignedCount for GET
// /users/{userId} with 1,000 users in the store.
func BenchmarkServerSignedGetUser(b *testing.B) {
	srv, err := kdsim.New(kdsim.Options{AppID: testAppID, AppSecret: testSecret})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if _, err := srv.PutUserDirect(kdsim.User{UserID: "1008600000029937" + threeDigits(i), DeptID: deptEng, Role: 1}); err != nil {
			b.Fatal(err)
		}
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, err := kdapi.NewClient(kdapi.WithBaseURL(ts.URL), kdapi.WithAppAuth(testAppID, testSecret, testUserID), kdapi.WithMaxConns(64))
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.GetUser(b.Context(), "1008600000029937"+threeDigits(i%1000)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func threeDigits(i int) string {
	return string([]byte{byte('0' + i/100%10), byte('0' + i/10%10), byte('0' + i%10)})
}

// BenchmarkHandlerSigned measures the handler alone (no network): signature
// verification plus GET /users/count.
func BenchmarkHandlerSigned(b *testing.B) {
	srv, err := kdsim.New(kdsim.Options{AppID: testAppID, AppSecret: testSecret, Now: newClock(t0).Now})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "http://sim.test"+kdapi.APIPath+"/users/count", nil)
	defaultSigner(t0).sign(r, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkHandlerBearer measures the handler alone with bearer
// authentication.
func BenchmarkHandlerBearer(b *testing.B) {
	srv, err := kdsim.New(kdsim.Options{Token: testToken})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, kdapi.APIPath+"/users/count", nil)
	r.Header.Set("Authorization", "Bearer+"+testToken.Reveal())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
