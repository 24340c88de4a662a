package kdsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

// admin sends an admin request and decodes a JSON answer into out (when not
// nil). It returns the status.
func (f *fixture) admin(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	r := newRequest(t, method, f.ts.URL+"/_admin/"+path, b)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	ctx := t.Context()

	// Writes carry the trace id kdsync derives from the event id.
	if err := f.client.CreateUser(kdapi.WithTraceID(ctx, "ev-1"), kdapi.CreateUserRequest{UserID: "31", ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: deptEng, Role: "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.client.UpdateUser(kdapi.WithTraceID(ctx, "ev-2"), "31", kdapi.UpdateUserRequest{Status: kdapi.Ptr(1), Role: kdapi.Ptr(5)}); err != nil {
		t.Fatal(err)
	}
	createUser(t, f.client, "32", deptSales, "0")
	if err := f.client.DeleteUser(kdapi.WithTraceID(ctx, "ev-3"), "31"); err != nil {
		t.Fatal(err)
	}

	var users struct {
		Users []kdsim.User `json:"users"`
		Total int          `json:"total"`
	}
	if st := f.admin(t, "GET", "users", "", &users); st != 200 || users.Total != 1 || users.Users[0].UserID != "32" || users.Users[0].DeptName != "Sales" {
		t.Fatalf("GET users: %d %+v", st, users)
	}

	var rec kdsim.UserRecord
	if st := f.admin(t, "GET", "users/31", "", &rec); st != 200 {
		t.Fatalf("GET users/31: %d", st)
	}
	if rec.User != nil || len(rec.Ops) != 3 {
		t.Fatalf("record of a deleted user = %+v", rec)
	}
	wantOps := []struct {
		op, trace string
	}{{kdsim.OpCreate, kdapi.TraceID("ev-1")}, {kdsim.OpUpdate, kdapi.TraceID("ev-2")}, {kdsim.OpDelete, kdapi.TraceID("ev-3")}}
	for i, w := range wantOps {
		got := rec.Ops[i]
		if got.Op != w.op || got.TraceID != w.trace || got.FaultAfter != "" || got.Direct || got.Time.IsZero() {
			t.Errorf("op %d = %+v, want %s with trace %s", i, got, w.op, w.trace)
		}
		if i > 0 && got.Seq <= rec.Ops[i-1].Seq {
			t.Errorf("op %d: seq %d not after %d", i, got.Seq, rec.Ops[i-1].Seq)
		}
	}
	if c := rec.Ops[0].Fields; c.DeptID == nil || *c.DeptID != deptEng || c.Role == nil || *c.Role != 1 || c.Status == nil || *c.Status != 0 {
		t.Errorf("create fields = %+v", c)
	}
	if u := rec.Ops[1].Fields; u.DeptID != nil || u.Role == nil || *u.Role != 5 || u.Status == nil || *u.Status != 1 {
		t.Errorf("update fields = %+v", u)
	}
	// The log is also reachable through the generated id of a live user.
	var rec32 kdsim.UserRecord
	if f.admin(t, "GET", "users/32", "", &rec32); rec32.User == nil || rec32.Ops[0].Seq != 3 {
		t.Errorf("record of 32 = %+v", rec32)
	}
	if byID, ok := f.srv.User(rec32.User.ID); !ok || byID.User.UserID != "32" {
		t.Errorf("User(generated id) = %+v, %v", byID, ok)
	}
	if st := f.admin(t, "GET", "users/39", "", nil); st != 404 {
		t.Errorf("GET users/39: %d, want 404", st)
	}

	var st kdsim.Stats
	f.admin(t, "GET", "stats", "", &st)
	if st.Creates != 2 || st.Updates != 1 || st.Deletes != 1 || st.Writes != 4 ||
		st.RequestsByMethod["POST"] != 2 || st.RequestsByOp["deleteUser"] != 1 || st.Requests != 4 {
		t.Errorf("stats = %+v", st)
	}

	// Faults: replace, read back, refuse nonsense.
	var fl kdsim.Faults
	if code := f.admin(t, "PUT", "faults", `{"latency":"1ms","errorRate":0.5,"errorStatuses":[503],"retryAfter":"3s"}`, &fl); code != 200 || fl.Latency != time.Millisecond || fl.ErrorRate != 0.5 {
		t.Errorf("PUT faults: %d %+v", code, fl)
	}
	if got := f.srv.Faults(); got.RetryAfter != 3*time.Second || len(got.ErrorStatuses) != 1 {
		t.Errorf("Faults() = %+v", got)
	}
	for _, bad := range []string{`{"errorRate":3}`, `{"latncy":"1s"}`, `not json`, `{"errorStatuses":[404]}`} {
		var env struct{ Code, Msg string }
		if code := f.admin(t, "PUT", "faults", bad, &env); code != 400 || env.Code != kdsim.CodeInvalid {
			t.Errorf("PUT faults %s: %d %+v", bad, code, env)
		}
	}
	if got := f.srv.Faults(); got.ErrorRate != 0.5 {
		t.Errorf("a refused PUT changed the faults: %+v", got)
	}
	f.admin(t, "PUT", "faults", `{}`, &fl)
	if got := f.srv.Faults(); got.ErrorRate != 0 || got.Latency != 0 {
		t.Errorf("PUT {} did not clear the faults: %+v", got)
	}

	// Outage for a while, then off.
	if code := f.admin(t, "POST", "outage?for=30s", "", &fl); code != 200 || fl.OutageUntil.IsZero() {
		t.Fatalf("POST outage: %d %+v", code, fl)
	}
	f.bearer(t, "GET", "/users/count", nil).expect(t, 503, kdsim.CodeUnavailable, "outage")
	for _, bad := range []string{"outage", "outage?for=x", "outage?for=-1s", "outage?until=yesterday"} {
		if code := f.admin(t, "POST", bad, "", nil); code != 400 {
			t.Errorf("POST %s: %d, want 400", bad, code)
		}
	}
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if code := f.admin(t, "POST", "outage?until="+until, "", &fl); code != 200 || fl.OutageUntil.Format(time.RFC3339) != until {
		t.Errorf("POST outage?until: %d %+v", code, fl)
	}
	f.admin(t, "DELETE", "outage", "", nil)
	f.bearer(t, "GET", "/users/count", nil).expect(t, 200, "0", "success")

	// Direct edits over HTTP.
	var u kdsim.User
	if code := f.admin(t, "PUT", "users/33", `{"deptId":"`+deptFinance+`","role":2,"status":2,"name":"Console Made","mobile":"+86 1"}`, &u); code != 200 || u.ID == "" || u.DeptName != "Finance" || u.Status != 2 {
		t.Errorf("PUT users/33: %d %+v", code, u)
	}
	got, err := f.client.GetUser(ctx, "33")
	if err != nil || got.Name != "Console Made" || got.Status != 2 {
		t.Errorf("GetUser(33) = %+v, %v", got, err)
	}
	for _, bad := range []string{`{"deptId":"1"}`, `{"deptId":"` + deptEng + `","role":4}`, `{"userId":"34","deptId":"` + deptEng + `"}`, `[`} {
		if code := f.admin(t, "PUT", "users/33", bad, nil); code != 400 {
			t.Errorf("PUT users/33 %s: %d, want 400", bad, code)
		}
	}
	if code := f.admin(t, "DELETE", "users/33", "", nil); code != 200 {
		t.Errorf("DELETE users/33: %d", code)
	}
	if code := f.admin(t, "DELETE", "users/33", "", nil); code != 404 {
		t.Errorf("second DELETE users/33: %d, want 404", code)
	}
	var rec33 kdsim.UserRecord
	f.admin(t, "GET", "users/33", "", &rec33)
	if len(rec33.Ops) != 2 || !rec33.Ops[0].Direct || !rec33.Ops[1].Direct || rec33.Ops[1].Op != kdsim.OpDelete {
		t.Errorf("direct ops = %+v", rec33.Ops)
	}

	var depts []kdsim.Department
	if f.admin(t, "GET", "departments", "", &depts); len(depts) != 6 || depts[0].ID != deptRoot {
		t.Errorf("departments = %+v", depts)
	}

	// Reset clears users, logs and counters, and keeps departments and faults.
	if err := f.srv.SetFaults(kdsim.Faults{Latency: time.Microsecond}); err != nil {
		t.Fatal(err)
	}
	if code := f.admin(t, "POST", "reset", "", nil); code != 200 {
		t.Fatalf("reset: %d", code)
	}
	if n := len(f.srv.Users()); n != 0 {
		t.Errorf("%d users after reset", n)
	}
	if _, ok := f.srv.User("31"); ok {
		t.Error("log of 31 survived the reset")
	}
	if st := f.srv.Stats(); st.Requests != 0 || st.Creates != 0 || st.Faults["outage"] != 0 {
		t.Errorf("stats after reset = %+v", st)
	}
	if f.srv.Faults().Latency != time.Microsecond {
		t.Error("reset dropped the faults")
	}
	createUser(t, f.client, "31", deptPlatform, "1")
	if rec, _ := f.srv.User("31"); len(rec.Ops) != 1 || rec.Ops[0].Seq != 1 {
		t.Errorf("after reset: %+v", rec)
	}

	if code := f.admin(t, "GET", "healthz", "", nil); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	if code := f.admin(t, "PATCH", "faults", "{}", nil); code != 404 {
		t.Errorf("PATCH faults: %d, want 404", code)
	}
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{Token: testToken, AdminToken: "adm1n"})
	tests := map[string]struct {
		path, header string
		want         int
	}{
		"no token":          {"stats", "", 401},
		"wrong token":       {"stats", "Bearer adm1m", 401},
		"API token refused": {"stats", "Bearer " + testToken.Reveal(), 401},
		"right token":       {"stats", "Bearer adm1n", 200},
		"Bearer+ form":      {"users", "Bearer+adm1n", 200},
		"healthz is open":   {"healthz", "", 200},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRequest(t, http.MethodGet, f.ts.URL+"/_admin/"+tc.path, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			rp := send(t, r)
			if rp.status != tc.want {
				t.Errorf("status %d, want %d: %s", rp.status, tc.want, rp.body)
			}
			if tc.want == 401 && (rp.code != kdsim.CodeAuth || strings.Contains(rp.msg, "adm1n")) {
				t.Errorf("refusal = %s", rp.body)
			}
		})
	}
}

// TestDirectEdits checks the Go methods a reconciliation test uses to change
// users behind kdsync's back.
func TestDirectEdits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	createUser(t, f.client, "41", deptEng, "1")
	before, _ := f.srv.User("41")

	// A console edit moves the user and disables it; the id is kept.
	u := *before.User
	u.DeptID, u.Status, u.Name = deptMobile, 1, "Renamed"
	got, err := f.srv.PutUserDirect(u)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != before.User.ID || got.DeptName != "Mobile" {
		t.Errorf("PutUserDirect = %+v", got)
	}
	api, err := f.client.GetUser(t.Context(), "41")
	if err != nil || api.DeptID != deptMobile || api.Status != 1 || api.Name != "Renamed" || api.DeptName != "Mobile" {
		t.Errorf("GetUser after a direct edit = %+v, %v", api, err)
	}
	// A user kdsync never created.
	stranger, err := f.srv.PutUserDirect(kdsim.User{UserID: "42", DeptID: deptSales, Role: 1})
	if err != nil || stranger.Name != "User 42" || stranger.ID == "" || stranger.ID == got.ID {
		t.Errorf("PutUserDirect(new) = %+v, %v", stranger, err)
	}
	if n, err := f.client.CountUsers(t.Context(), ""); err != nil || n != 2 {
		t.Errorf("count = %d (%v), want 2", n, err)
	}
	if !f.srv.DeleteUserDirect("41") || f.srv.DeleteUserDirect("41") {
		t.Error("DeleteUserDirect: want true then false")
	}
	if err := f.client.UpdateUser(t.Context(), "41", kdapi.UpdateUserRequest{Status: kdapi.Ptr(0)}); err == nil {
		t.Error("update of a user deleted behind the client's back succeeded")
	}
	rec, _ := f.srv.User("41")
	if len(rec.Ops) != 3 || rec.Ops[0].Direct || !rec.Ops[1].Direct || !rec.Ops[2].Direct {
		t.Errorf("ops = %+v", rec.Ops)
	}
	// Direct edits are not API writes.
	if st := f.srv.Stats(); st.Writes != 1 || st.UnknownUpdates != 1 {
		t.Errorf("stats = %+v", st)
	}

	for name, bad := range map[string]kdsim.User{
		"no userId":       {DeptID: deptEng},
		"letters":         {UserID: "4a", DeptID: deptEng},
		"unknown dept":    {UserID: "43", DeptID: "1"},
		"role 4":          {UserID: "43", DeptID: deptEng, Role: 4},
		"status 3":        {UserID: "43", DeptID: deptEng, Status: 3},
		"someone else id": {UserID: "43", DeptID: deptEng, ID: stranger.ID},
	} {
		if _, err := f.srv.PutUserDirect(bad); err == nil {
			t.Errorf("%s: PutUserDirect accepted %+v", name, bad)
		}
	}
}
