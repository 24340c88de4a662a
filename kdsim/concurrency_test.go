package kdsim_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

// TestConcurrentUse runs clients, fault changes, direct edits and admin
// reads at once (run it with -race), then checks the totals and the logs.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	const workers, perWorker = 8, 40
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				id := fmt.Sprint(100000 + w*1000 + i)
				tctx := kdapi.WithTraceID(ctx, "ev-"+id)
				if err := f.client.CreateUser(tctx, kdapi.CreateUserRequest{UserID: id, ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: deptPlatform, Role: "1"}}); err != nil {
					errs <- err
					continue
				}
				if err := f.client.UpdateUser(tctx, id, kdapi.UpdateUserRequest{Status: kdapi.Ptr(1)}); err != nil {
					errs <- err
				}
				if _, err := f.client.GetUser(ctx, id); err != nil {
					errs <- err
				}
				if _, err := f.client.ListUsers(ctx, kdapi.ListUsersOptions{DeptID: deptEng, Limit: 20}); err != nil {
					errs <- err
				}
				if i%2 == 0 {
					if err := f.client.DeleteUser(tctx, id); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // fault config changes that do not fail requests
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := f.srv.SetFaults(kdsim.Faults{Jitter: time.Duration(i%3) * time.Microsecond}); err != nil {
				errs <- err
			}
			_ = f.srv.Faults()
			time.Sleep(time.Millisecond)
		}
	})
	bg.Go(func() { // readers and direct edits of other users
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = f.srv.Stats()
			_ = f.srv.Users()
			_, _ = f.srv.User("100000")
			if _, err := f.srv.PutUserDirect(kdsim.User{UserID: fmt.Sprint(900000 + i%10), DeptID: deptSales, Role: 1}); err != nil {
				errs <- err
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	const n = workers * perWorker
	st := f.srv.Stats()
	if st.Creates != n || st.Updates != n || st.Deletes != n/2 || st.Writes != n*5/2 {
		t.Errorf("stats = %+v", st)
	}
	users := 0
	for _, u := range f.srv.Users() {
		if u.DeptID == deptPlatform {
			users++
			if u.Status != 1 {
				t.Errorf("user %s: status %d", u.UserID, u.Status)
			}
		}
	}
	if users != n/2 {
		t.Errorf("%d users left, want %d", users, n/2)
	}
	seqs := map[uint64]bool{}
	for w := range workers {
		for i := range perWorker {
			id := fmt.Sprint(100000 + w*1000 + i)
			rec, ok := f.srv.User(id)
			want := []string{kdsim.OpCreate, kdsim.OpUpdate}
			if i%2 == 0 {
				want = append(want, kdsim.OpDelete)
			}
			if !ok || len(rec.Ops) != len(want) {
				t.Fatalf("User(%s) = %+v", id, rec)
			}
			for j, op := range rec.Ops {
				if op.Op != want[j] || op.TraceID != kdapi.TraceID("ev-"+id) || seqs[op.Seq] || j > 0 && op.Seq <= rec.Ops[j-1].Seq {
					t.Errorf("User(%s) op %d = %+v", id, j, op)
				}
				seqs[op.Seq] = true
			}
		}
	}
}
