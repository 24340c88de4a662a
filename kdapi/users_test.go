package kdapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCreateUser(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "POST")
		testURI(t, r, APIPath+"/users")
		testSigned(t, r, TraceID("evt-1"))
		testHeader(t, r, "Content-Type", "application/json;charset=UTF-8")
		testJSONBody(t, r, `{"userId":"1008600000029937613","modifyUserInfoReq":{"deptId":"1243693141656107521","role":"0"}}`)
		fmt.Fprint(w, `{"code":0,"msg":"success"}`)
	})
	ctx := WithTraceID(t.Context(), "evt-1")
	err := client.CreateUser(ctx, CreateUserRequest{
		UserID:            "1008600000029937613",
		ModifyUserInfoReq: &CreateUserInfo{DeptID: "1243693141656107521", Role: strconv.Itoa(RoleDeptAdmin)},
	})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
}

func TestCreateUser_UserIDOnly(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) {
		testSigned(t, r, "")
		testJSONBody(t, r, `{"userId":"1"}`)
		fmt.Fprint(w, `{"code":"0"}`)
	})
	if err := client.CreateUser(t.Context(), CreateUserRequest{UserID: "1"}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateUser_AlreadyExists(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"code":13000501,"msg":"user already exists"}`)
	})
	err := client.CreateUser(t.Context(), CreateUserRequest{UserID: "1"})
	testClass(t, err, ErrAlreadyExists)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "13000501" || ae.Msg != "user already exists" || ae.Method != "POST" || ae.Path != APIPath+"/users" {
		t.Errorf("error = %#v", err)
	}
}

// TestUsers_InvalidInput: bad arguments fail before any request is sent
// (the mux has no handlers, so a request would fail the test).
func TestUsers_InvalidInput(t *testing.T) {
	t.Parallel()
	client, _, _ := setup(t)
	ctx := t.Context()
	_, getErr := client.GetUser(ctx, "")
	_, listErr := client.ListUsers(ctx, ListUsersOptions{Limit: 101})
	_, offErr := client.ListUsers(ctx, ListUsersOptions{Offset: -1})
	_, negErr := client.ListUsers(ctx, ListUsersOptions{Limit: -1})
	_, deptErr := client.GetDepartment(ctx, "")
	_, dotErr := client.GetUser(ctx, "..")
	for name, err := range map[string]error{
		"create without userId": client.CreateUser(ctx, CreateUserRequest{}),
		"update without userId": client.UpdateUser(ctx, "", UpdateUserRequest{Status: Ptr(0)}),
		"get without userId":    getErr,
		"delete without userId": client.DeleteUser(ctx, ""),
		"limit over 100":        listErr,
		"negative limit":        negErr,
		"negative offset":       offErr,
		"department without id": deptErr,
		"dot-dot user id":       dotErr,
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		testClass(t, err, ErrPermanent)
	}
}

func TestUpdateUser(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		body UpdateUserRequest
		want string
	}{
		"status 0 is sent":    {UpdateUserRequest{Status: Ptr(StatusEnabled)}, `{"status":0}`},
		"disable":             {UpdateUserRequest{Status: Ptr(StatusDisabled)}, `{"status":1}`},
		"role 0 is sent":      {UpdateUserRequest{Role: Ptr(RoleDeptAdmin)}, `{"role":0}`},
		"department as int64": {UpdateUserRequest{DeptID: Ptr(int64(1243693141656107521))}, `{"deptId":1243693141656107521}`},
		"all fields":          {UpdateUserRequest{DeptID: Ptr(int64(0)), Role: Ptr(RoleMemberManager), Status: Ptr(StatusEnabled)}, `{"deptId":0,"role":5,"status":0}`},
		"nothing":             {UpdateUserRequest{}, `{}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			mux.HandleFunc("/users/1289290865663084545", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "PUT")
				testURI(t, r, APIPath+"/users/1289290865663084545")
				testSigned(t, r, "")
				testJSONBody(t, r, tc.want)
				fmt.Fprint(w, `{"code":0,"msg":"success"}`)
			})
			if err := client.UpdateUser(t.Context(), "1289290865663084545", tc.body); err != nil {
				t.Fatalf("UpdateUser: %v", err)
			}
		})
	}
}

// TestUsers_PathEscaping: an id with reserved or non-ASCII characters is
// escaped once (not twice) and the signature covers what was sent.
func TestUsers_PathEscaping(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	var mu sync.Mutex
	var got []string
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		testSigned(t, r, "")
		mu.Lock()
		got = append(got, r.Method+" "+r.RequestURI)
		mu.Unlock()
		fmt.Fprint(w, `{"code":0,"data":{"id":"x"}}`)
	})
	ctx := t.Context()
	if _, err := client.GetUser(ctx, "J\u00fcrgen M/1"); err != nil {
		t.Fatal(err)
	}
	if err := client.UpdateUser(ctx, "a b%20c", UpdateUserRequest{Status: Ptr(0)}); err != nil {
		t.Fatal(err)
	}
	if err := client.DeleteUser(ctx, "a+b@c?d#e"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetDepartment(ctx, "x..y"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GET " + APIPath + "/users/J%C3%BCrgen%20M%2F1",
		"PUT " + APIPath + "/users/a%20b%2520c",
		"DELETE " + APIPath + "/users/a+b@c%3Fd%23e",
		"GET " + APIPath + "/departments/x..y",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request targets (-want +got):\n%s", diff)
	}
}

func TestGetUser(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/users/1316083732377070977", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "GET")
		testURI(t, r, APIPath+"/users/1316083732377070977")
		testSigned(t, r, TraceID("e"))
		if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
			t.Errorf("GET carries a body: length %d, type %q", r.ContentLength, r.Header.Get("Content-Type"))
		}
		// The documented example, ids mixed as numbers and strings.
		fmt.Fprint(w, `{
		  "data": {"id": "1316083732377070977", "orgId": 9190086000001210958, "userId": "1008600000293202821",
		           "deptId": 1243693141656107521, "deptName": "newDept", "mobile": "0086181****8439",
		           "name": "Sam", "role": 1, "status": "0"},
		  "code": 0, "msg": "success"}`)
	})
	got, err := client.GetUser(WithTraceID(t.Context(), "e"), "1316083732377070977")
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	want := &User{ID: "1316083732377070977", OrgID: "9190086000001210958", UserID: "1008600000293202821",
		DeptID: "1243693141656107521", DeptName: "newDept", Mobile: "0086181****8439", Name: "Sam", Role: 1, Status: 0}
	if !cmp.Equal(got, want) {
		t.Errorf("GetUser = %+v, want %+v", got, want)
	}
}

func TestGetUser_BadPayload(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"no data":         `{"code":0,"msg":"success"}`,
		"null data":       `{"code":0,"data":null}`,
		"data not object": `{"code":0,"data":[1]}`,
		"bad role":        `{"code":0,"data":{"role":"admin"}}`,
		"bad id type":     `{"code":0,"data":{"id":{"x":1}}}`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			mux.HandleFunc("/users/1", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) })
			u, err := client.GetUser(t.Context(), "1")
			if u != nil {
				t.Errorf("GetUser returned %+v with a bad payload", u)
			}
			testClass(t, err, ErrPermanent)
		})
	}
}

func TestDeleteUser(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/users/1289290865663084545", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "DELETE")
		testURI(t, r, APIPath+"/users/1289290865663084545")
		testSigned(t, r, "")
		if r.ContentLength != 0 {
			t.Errorf("DELETE carries a %d-byte body", r.ContentLength)
		}
		fmt.Fprint(w, `{"code":"0","msg":"success"}`)
	})
	if err := client.DeleteUser(t.Context(), "1289290865663084545"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
}

func TestDeleteUser_NotFound(t *testing.T) {
	t.Parallel()
	client, mux, _ := setup(t)
	mux.HandleFunc("/users/9", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"code":"13000309","msg":"resource does not exist"}`)
	})
	testClass(t, client.DeleteUser(t.Context(), "9"), ErrNotFound)
}

const user1 = `{"id":"1","userId":"u1","deptId":"10","name":"Ann","role":1,"status":0}`
const user2 = `{"id":"2","userId":"u2","deptId":"10","name":"Bob","role":0,"status":1}`

func TestListUsers(t *testing.T) {
	t.Parallel()
	ann := User{ID: "1", UserID: "u1", DeptID: "10", Name: "Ann", Role: 1, Status: 0}
	bob := User{ID: "2", UserID: "u2", DeptID: "10", Name: "Bob", Role: 0, Status: 1}
	tests := map[string]struct {
		opts      ListUsersOptions
		wantQuery string
		response  string
		want      *UserPage
	}{
		"list form, string total": {
			opts:      ListUsersOptions{DeptID: "10", IsDirect: true, KeyWord: "J\u00fcrgen M", Offset: 20, Limit: 10},
			wantQuery: "deptId=10&isDirect=true&keyWord=J%C3%BCrgen%20M&limit=10&offset=20",
			response:  `{"code":"0","msg":"success","list":[` + user1 + `,` + user2 + `],"total":"22"}`,
			want:      &UserPage{Users: []User{ann, bob}, Total: 22},
		},
		"older data form": {
			opts:      ListUsersOptions{},
			wantQuery: "limit=100&offset=0",
			response:  `{"code":0,"msg":"success","data":[` + user2 + `],"total":1}`,
			want:      &UserPage{Users: []User{bob}, Total: 1},
		},
		"list wins over data": {
			opts:      ListUsersOptions{Limit: 1},
			wantQuery: "limit=1&offset=0",
			response:  `{"code":0,"list":[` + user1 + `],"data":[` + user2 + `],"total":2}`,
			want:      &UserPage{Users: []User{ann}, Total: 2},
		},
		"empty": {
			opts:      ListUsersOptions{Offset: 5},
			wantQuery: "limit=100&offset=5",
			response:  `{"code":0,"msg":"success","total":0}`,
			want:      &UserPage{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			mux.HandleFunc("/userList", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "GET")
				testURI(t, r, APIPath+"/userList?"+tc.wantQuery)
				testSigned(t, r, "")
				fmt.Fprint(w, tc.response)
			})
			got, err := client.ListUsers(t.Context(), tc.opts)
			if err != nil {
				t.Fatalf("ListUsers: %v", err)
			}
			if !cmp.Equal(got, tc.want) {
				t.Errorf("ListUsers = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// pagedUsers serves n users from GET /userList honouring offset and limit,
// with at most pageCap per page when pageCap > 0, and records the offsets
// asked for. failAt makes the request with that offset answer 503.
type pagedUsers struct {
	n, pageCap, failAt int
	noTotal            bool

	mu      sync.Mutex
	offsets []int
}

func (p *pagedUsers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, _ := strconv.Atoi(q.Get("limit"))
	p.mu.Lock()
	p.offsets = append(p.offsets, offset)
	p.mu.Unlock()
	if p.failAt > 0 && offset == p.failAt {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"code":503,"msg":"busy"}`)
		return
	}
	if p.pageCap > 0 {
		limit = min(limit, p.pageCap)
	}
	list := "["
	for i := offset; i < min(offset+limit, p.n); i++ {
		if i > offset {
			list += ","
		}
		list += fmt.Sprintf(`{"id":"%d"}`, i)
	}
	list += "]"
	if p.noTotal {
		fmt.Fprintf(w, `{"code":0,"list":%s}`, list)
		return
	}
	fmt.Fprintf(w, `{"code":0,"list":%s,"total":%d}`, list, p.n)
}

func (p *pagedUsers) Offsets() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.offsets...)
}

func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func TestAllUsers(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		server      *pagedUsers
		opts        ListUsersOptions
		stopAfter   int // break out of the loop after this many users; 0 = never
		wantIDs     []string
		wantOffsets []int
		wantErr     error
	}{
		"several pages": {
			server: &pagedUsers{n: 7}, opts: ListUsersOptions{Limit: 3},
			wantIDs: ids(0, 7), wantOffsets: []int{0, 3, 6},
		},
		"exact multiple of the limit": {
			server: &pagedUsers{n: 6}, opts: ListUsersOptions{Limit: 3},
			wantIDs: ids(0, 6), wantOffsets: []int{0, 3},
		},
		"starting offset": {
			server: &pagedUsers{n: 7}, opts: ListUsersOptions{Limit: 3, Offset: 2},
			wantIDs: ids(2, 7), wantOffsets: []int{2, 5},
		},
		"default limit": {
			server: &pagedUsers{n: 150}, opts: ListUsersOptions{},
			wantIDs: ids(0, 150), wantOffsets: []int{0, 100},
		},
		"server returns fewer than asked, total says more": {
			server: &pagedUsers{n: 5, pageCap: 2}, opts: ListUsersOptions{Limit: 3},
			wantIDs: ids(0, 5), wantOffsets: []int{0, 2, 4},
		},
		"no total: a short page ends the walk": {
			server: &pagedUsers{n: 5, noTotal: true}, opts: ListUsersOptions{Limit: 2},
			wantIDs: ids(0, 5), wantOffsets: []int{0, 2, 4},
		},
		"no total, exact multiple: ends on the empty page": {
			server: &pagedUsers{n: 4, noTotal: true}, opts: ListUsersOptions{Limit: 2},
			wantIDs: ids(0, 4), wantOffsets: []int{0, 2, 4},
		},
		"consumer breaks": {
			server: &pagedUsers{n: 7}, opts: ListUsersOptions{Limit: 3}, stopAfter: 4,
			wantIDs: ids(0, 4), wantOffsets: []int{0, 3},
		},
		"error on the second page is yielded": {
			server: &pagedUsers{n: 7, failAt: 3}, opts: ListUsersOptions{Limit: 3},
			wantIDs: ids(0, 3), wantOffsets: []int{0, 3}, wantErr: ErrRetryable,
		},
		"invalid options": {
			server: &pagedUsers{n: 7}, opts: ListUsersOptions{Limit: 500},
			wantErr: ErrPermanent,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			mux.Handle("/userList", tc.server)
			var got []string
			var errs []error
			for u, err := range client.AllUsers(t.Context(), tc.opts) {
				if err != nil {
					if u != nil {
						t.Errorf("yielded a user %+v with error %v", u, err)
					}
					errs = append(errs, err)
					continue // the iterator must stop by itself after an error
				}
				got = append(got, string(u.ID))
				if tc.stopAfter > 0 && len(got) == tc.stopAfter {
					break
				}
			}
			if diff := cmp.Diff(tc.wantIDs, got); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantOffsets, tc.server.Offsets()); diff != "" {
				t.Errorf("offsets requested (-want +got):\n%s", diff)
			}
			switch {
			case tc.wantErr == nil && len(errs) != 0:
				t.Errorf("errors: %v", errs)
			case tc.wantErr != nil && len(errs) != 1:
				t.Errorf("got %d errors %v, want exactly one", len(errs), errs)
			case tc.wantErr != nil:
				testClass(t, errs[0], tc.wantErr)
			}
		})
	}
}

func TestCountUsers(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		deptID, wantURI, response string
		want                      int64
	}{
		"whole org":       {"", APIPath + "/users/count", `{"total":42,"code":0,"msg":"success"}`, 42},
		"department":      {"1243693141656107521", APIPath + "/users/count?deptId=1243693141656107521", `{"total":"7","code":"0"}`, 7},
		"nested in data":  {"", APIPath + "/users/count", `{"code":0,"data":{"total":3}}`, 3},
		"zero is a count": {"", APIPath + "/users/count", `{"code":0,"total":0}`, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client, mux, _ := setup(t)
			mux.HandleFunc("/users/count", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "GET")
				testURI(t, r, tc.wantURI)
				testSigned(t, r, "")
				fmt.Fprint(w, tc.response)
			})
			got, err := client.CountUsers(t.Context(), tc.deptID)
			if err != nil || got != tc.want {
				t.Errorf("CountUsers = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	client, mux, _ := setup(t)
	mux.HandleFunc("/users/count", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"code":0}`) })
	if _, err := client.CountUsers(t.Context(), ""); !errors.Is(err, ErrPermanent) {
		t.Errorf("CountUsers without a total: %v, want ErrPermanent", err)
	}
}

func TestValidRoleStatus(t *testing.T) {
	t.Parallel()
	for r, want := range map[int]bool{-1: false, 0: true, 1: true, 2: true, 3: true, 4: false, 5: true, 6: false} {
		if ValidRole(r) != want {
			t.Errorf("ValidRole(%d) = %v", r, !want)
		}
	}
	for s, want := range map[int]bool{-1: false, 0: true, 1: true, 2: false, 7: false} {
		if ValidStatus(s) != want {
			t.Errorf("ValidStatus(%d) = %v", s, !want)
		}
	}
}

// BenchmarkCreateUpdateRoundTrip is one signed create plus one signed update
// against a local server that answers {"code":"0"}.
func BenchmarkCreateUpdateRoundTrip(b *testing.B) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"code":"0"}`))
	}))
	b.Cleanup(server.Close)
	c, err := NewClient(WithBaseURL(server.URL), WithAppAuth(testAppID, testSecret, testUserID))
	if err != nil {
		b.Fatal(err)
	}
	benchCreateUpdate(b, c)
}

// BenchmarkCreateUpdateNoNetwork is the same pair with a transport that
// answers in memory: what kdapi itself costs, without net/http's client and
// server.
func BenchmarkCreateUpdateNoNetwork(b *testing.B) {
	c, err := NewClient(WithBaseURL("http://kd.invalid"), WithAppAuth(testAppID, testSecret, testUserID),
		WithHTTPClient(&http.Client{Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(`{"code":"0"}`)), Request: r}, nil
		})}))
	if err != nil {
		b.Fatal(err)
	}
	benchCreateUpdate(b, c)
}

func benchCreateUpdate(b *testing.B, c *Client) {
	ctx := b.Context()
	create := CreateUserRequest{UserID: "1008600000029937613", ModifyUserInfoReq: &CreateUserInfo{DeptID: "1243693141656107521", Role: "1"}}
	update := UpdateUserRequest{DeptID: Ptr(int64(1243693141656107521)), Role: Ptr(1), Status: Ptr(0)}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.CreateUser(ctx, create); err != nil {
			b.Fatal(err)
		}
		if err := c.UpdateUser(ctx, "1008600000029937613", update); err != nil {
			b.Fatal(err)
		}
	}
}
