package kdsim_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
)

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		opts kdsim.Options
		want string
	}{
		"no auth":             {kdsim.Options{}, "no authentication configured"},
		"app id alone":        {kdsim.Options{AppID: "a"}, "needs both AppID and AppSecret"},
		"secret alone":        {kdsim.Options{AppSecret: "s", Token: "t"}, "needs both AppID and AppSecret"},
		"bare bearer prefix":  {kdsim.Options{Token: "Bearer+"}, "token is empty"},
		"negative window":     {kdsim.Options{Token: "t", DateWindow: -1}, "window"},
		"bad faults":          {kdsim.Options{Token: "t", Faults: kdsim.Faults{ErrorRate: 2}}, "errorRate"},
		"no root":             {kdsim.Options{Token: "t", Departments: []kdsim.Department{{ID: "1", ParentID: "2", Name: "a"}, {ID: "2", ParentID: "1", Name: "b"}}}, "no root"},
		"two roots":           {kdsim.Options{Token: "t", Departments: []kdsim.Department{{ID: "1", Name: "a"}, {ID: "2", ParentID: "0", Name: "b"}}}, "both roots"},
		"unknown parent":      {kdsim.Options{Token: "t", Departments: []kdsim.Department{{ID: "1", Name: "a"}, {ID: "2", ParentID: "3", Name: "b"}}}, "parent 3 does not exist"},
		"cycle":               {kdsim.Options{Token: "t", Departments: []kdsim.Department{{ID: "1", Name: "a"}, {ID: "2", ParentID: "3", Name: "b"}, {ID: "3", ParentID: "2", Name: "c"}}}, "cycle"},
		"non-digit dept id":   {kdsim.Options{Token: "t", Departments: []kdsim.Department{{ID: "x1", Name: "a"}}}, "digits"},
		"duplicate dept id":   {kdsim.Options{Token: "t", Departments: []kdsim.Department{{ID: "1", Name: "a"}, {ID: "1", ParentID: "1", Name: "b"}}}, "duplicate"},
		"dept without a name": {kdsim.Options{Token: "t", Departments: []kdsim.Department{{ID: "1"}}}, "empty name"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := kdsim.New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	for name, opts := range map[string]kdsim.Options{
		"bearer only":            {Token: "t"},
		"app only":               {AppID: "a", AppSecret: "s"},
		"both":                   {AppID: "a", AppSecret: "s", Token: "Bearer t"},
		"custom departments":     {Token: "t", Departments: []kdsim.Department{{ID: "10", ParentID: "0", Name: "Root"}, {ID: "11", ParentID: "10", Name: "Child"}}},
		"default depts are good": {Token: "t", Departments: kdsim.DefaultDepartments()},
	} {
		if _, err := kdsim.New(opts); err != nil {
			t.Errorf("%s: New: %v", name, err)
		}
	}
}

// TestUserLifecycleThroughClient drives every user endpoint through a real
// kdapi.Client with app authentication.
func TestUserLifecycleThroughClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	ctx, c := t.Context(), f.client

	createUser(t, c, "1008600000029937613", deptPlatform, "1")
	got, err := c.GetUser(ctx, "1008600000029937613")
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if got.ID == "" || got.ID == "1008600000029937613" {
		t.Errorf("generated id = %q, want a new id", got.ID)
	}
	want := &kdapi.User{
		ID: got.ID, OrgID: kdsim.DefaultOrgID, UserID: "1008600000029937613", DeptID: deptPlatform,
		DeptName: "Platform", Name: "User 1008600000029937613", Role: kdapi.RoleCommonUser, Status: kdapi.StatusEnabled,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetUser (-want +got):\n%s", diff)
	}
	byID, err := c.GetUser(ctx, string(got.ID))
	if err != nil || byID.UserID != "1008600000029937613" {
		t.Errorf("GetUser by generated id = %+v, %v", byID, err)
	}

	if err := c.UpdateUser(ctx, "1008600000029937613", kdapi.UpdateUserRequest{
		DeptID: kdapi.Ptr(int64(1319678187126486147)), Role: kdapi.Ptr(kdapi.RoleDeptAdmin), Status: kdapi.Ptr(kdapi.StatusDisabled),
	}); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	got, err = c.GetUser(ctx, "1008600000029937613")
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if got.DeptID != deptSales || got.DeptName != "Sales" || got.Role != 0 || got.Status != 1 {
		t.Errorf("after update: %+v", got)
	}
	// status 0 (enabled) must be applied, not mistaken for "absent".
	if err := c.UpdateUser(ctx, "1008600000029937613", kdapi.UpdateUserRequest{Status: kdapi.Ptr(kdapi.StatusEnabled)}); err != nil {
		t.Fatalf("UpdateUser status 0: %v", err)
	}
	if got, _ = c.GetUser(ctx, "1008600000029937613"); got.Status != 0 || got.DeptID != deptSales {
		t.Errorf("after enabling: %+v", got)
	}

	n, err := c.CountUsers(ctx, "")
	if err != nil || n != 1 {
		t.Errorf("CountUsers = %d, %v; want 1", n, err)
	}
	page, err := c.ListUsers(ctx, kdapi.ListUsersOptions{Limit: 10})
	if err != nil || page.Total != 1 || len(page.Users) != 1 || page.Users[0].UserID != "1008600000029937613" {
		t.Errorf("ListUsers = %+v, %v", page, err)
	}

	if err := c.DeleteUser(ctx, "1008600000029937613"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, err := c.GetUser(ctx, "1008600000029937613"); !errors.Is(err, kdapi.ErrNotFound) {
		t.Errorf("GetUser after delete: %v, want ErrNotFound", err)
	}
	st := f.srv.Stats()
	if st.Creates != 1 || st.Updates != 2 || st.Deletes != 1 || st.Writes != 4 {
		t.Errorf("stats = %+v", st)
	}
}

// TestClientErrorClasses checks that the client classifies every refusal as
// kdsync needs.
func TestClientErrorClasses(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	createUser(t, f.client, "42", deptEng, "1")
	tests := map[string]struct {
		call     func() error
		sentinel error
		code     string
	}{
		"duplicate create": {func() error {
			return f.client.CreateUser(t.Context(), kdapi.CreateUserRequest{UserID: "42", ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: deptEng, Role: "1"}})
		}, kdapi.ErrAlreadyExists, kdsim.CodeUserExists},
		"create in unknown department": {func() error {
			return f.client.CreateUser(t.Context(), kdapi.CreateUserRequest{UserID: "43", ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: "999", Role: "1"}})
		}, kdapi.ErrPermanent, kdsim.CodeInvalid},
		"create with role 4": {func() error {
			return f.client.CreateUser(t.Context(), kdapi.CreateUserRequest{UserID: "43", ModifyUserInfoReq: &kdapi.CreateUserInfo{DeptID: deptEng, Role: "4"}})
		}, kdapi.ErrPermanent, kdsim.CodeInvalid},
		"update unknown user": {func() error {
			return f.client.UpdateUser(t.Context(), "7", kdapi.UpdateUserRequest{Status: kdapi.Ptr(1)})
		}, kdapi.ErrNotFound, kdsim.CodeUserNotFound},
		"update with status 2": {func() error {
			return f.client.UpdateUser(t.Context(), "42", kdapi.UpdateUserRequest{Status: kdapi.Ptr(2)})
		}, kdapi.ErrPermanent, kdsim.CodeInvalid},
		"get unknown user": {func() error {
			_, err := f.client.GetUser(t.Context(), "7")
			return err
		}, kdapi.ErrNotFound, kdsim.CodeUserNotFound},
		"delete unknown user": {func() error { return f.client.DeleteUser(t.Context(), "7") }, kdapi.ErrNotFound, kdsim.CodeUserNotFound},
		"unknown department": {func() error {
			_, err := f.client.GetDepartment(t.Context(), "999")
			return err
		}, kdapi.ErrNotFound, kdsim.CodeDeptNotFound},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.call()
			var ae *kdapi.APIError
			if !errors.Is(err, tc.sentinel) || !errors.As(err, &ae) || ae.Code != tc.code || ae.HTTPStatus != http.StatusBadRequest {
				t.Fatalf("err = %v; want %v with code %s and HTTP 400", err, tc.sentinel, tc.code)
			}
		})
	}
	st := f.srv.Stats()
	if st.DuplicateCreates != 1 || st.UnknownUpdates != 1 || st.UnknownDeletes != 1 || st.Invalid != 3 || st.Creates != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestCreateUserValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	createUser(t, f.client, "500", deptEng, "1")
	tests := map[string]struct {
		body   string
		status int
		code   string
		msg    string
	}{
		"valid":                  {`{"userId":"501","modifyUserInfoReq":{"deptId":"` + deptSales + `","role":"5"}}`, 200, "0", "success"},
		"valid role 3":           {`{"userId":"502","modifyUserInfoReq":{"deptId":"` + deptRoot + `","role":"3"},"extra":1}`, 200, "0", "success"},
		"duplicate":              {`{"userId":"500","modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"1"}}`, 400, kdsim.CodeUserExists, "user already exists"},
		"empty body":             {``, 400, kdsim.CodeInvalid, "want a JSON object"},
		"array":                  {`[]`, 400, kdsim.CodeInvalid, "want a JSON object"},
		"malformed":              {`{"userId":`, 400, kdsim.CodeInvalid, "malformed JSON"},
		"no userId":              {`{"modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"1"}}`, 400, kdsim.CodeInvalid, "userId: required"},
		"numeric userId":         {`{"userId":501,"modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"1"}}`, 400, kdsim.CodeInvalid, "userId: want a string"},
		"empty userId":           {`{"userId":"","modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"1"}}`, 400, kdsim.CodeInvalid, "userId: want a non-empty string of digits"},
		"letters in userId":      {`{"userId":"12a","modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"1"}}`, 400, kdsim.CodeInvalid, "userId"},
		"no modifyUserInfoReq":   {`{"userId":"503"}`, 400, kdsim.CodeInvalid, "modifyUserInfoReq: required"},
		"modifyUserInfoReq text": {`{"userId":"503","modifyUserInfoReq":"x"}`, 400, kdsim.CodeInvalid, "modifyUserInfoReq: want an object"},
		"no deptId":              {`{"userId":"503","modifyUserInfoReq":{"role":"1"}}`, 400, kdsim.CodeInvalid, "deptId: required"},
		"numeric deptId":         {`{"userId":"503","modifyUserInfoReq":{"deptId":1319678187126486144,"role":"1"}}`, 400, kdsim.CodeInvalid, "deptId: want a string"},
		"unknown deptId":         {`{"userId":"503","modifyUserInfoReq":{"deptId":"77","role":"1"}}`, 400, kdsim.CodeInvalid, "department 77 does not exist"},
		"no role":                {`{"userId":"503","modifyUserInfoReq":{"deptId":"` + deptEng + `"}}`, 400, kdsim.CodeInvalid, "role: required"},
		"numeric role":           {`{"userId":"503","modifyUserInfoReq":{"deptId":"` + deptEng + `","role":1}}`, 400, kdsim.CodeInvalid, "role: want a string"},
		"role 4":                 {`{"userId":"503","modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"4"}}`, 400, kdsim.CodeInvalid, `"4" is not one of`},
		"role 01":                {`{"userId":"503","modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"01"}}`, 400, kdsim.CodeInvalid, `"01" is not one of`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			rp := f.signed(t, http.MethodPost, "/users", body)
			rp.expect(t, tc.status, tc.code, tc.msg)
			if !rp.codeString {
				t.Errorf("write answered with a numeric code: %s", rp.body)
			}
		})
	}
	if _, ok := f.srv.User("503"); ok {
		t.Error("an invalid create was applied")
	}
	rec, ok := f.srv.User("501")
	if !ok || rec.User == nil || rec.User.Role != 5 || rec.User.DeptID != deptSales || rec.User.Status != 0 {
		t.Errorf("User(501) = %+v, %v", rec, ok)
	}
}

func TestUpdateUserValidation(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		body   string
		status int
		code   string
		msg    string
		want   kdsim.User // Role, Status, DeptID after the call
	}{
		"deptId number":          {`{"deptId":1319678187126486147}`, 200, "0", "success", kdsim.User{DeptID: deptSales, Role: 1}},
		"deptId string":          {`{"deptId":"1319678187126486147"}`, 200, "0", "success", kdsim.User{DeptID: deptSales, Role: 1}},
		"all fields":             {`{"deptId":1243693141656107521,"role":5,"status":1}`, 200, "0", "success", kdsim.User{DeptID: deptRoot, Role: 5, Status: 1}},
		"unknown fields ignored": {`{"status":1,"name":"x","foo":{"bar":[1]}}`, 200, "0", "success", kdsim.User{DeptID: deptEng, Role: 1, Status: 1}},
		"null is absent":         {`{"status":1,"role":null}`, 200, "0", "success", kdsim.User{DeptID: deptEng, Role: 1, Status: 1}},
		"role 0":                 {`{"role":0}`, 200, "0", "success", kdsim.User{DeptID: deptEng, Role: 0}},
		"unknown deptId":         {`{"deptId":77}`, 400, kdsim.CodeInvalid, "deptId: department 77 does not exist", kdsim.User{DeptID: deptEng, Role: 1}},
		"fractional deptId":      {`{"deptId":1.5}`, 400, kdsim.CodeInvalid, "deptId: want a positive integer", kdsim.User{DeptID: deptEng, Role: 1}},
		"negative deptId":        {`{"deptId":-1}`, 400, kdsim.CodeInvalid, "deptId: want a positive integer", kdsim.User{DeptID: deptEng, Role: 1}},
		"deptId object":          {`{"deptId":{}}`, 400, kdsim.CodeInvalid, "deptId: want a positive integer", kdsim.User{DeptID: deptEng, Role: 1}},
		"deptId letters":         {`{"deptId":"12x"}`, 400, kdsim.CodeInvalid, "deptId: want a positive integer", kdsim.User{DeptID: deptEng, Role: 1}},
		"role 4":                 {`{"role":4}`, 400, kdsim.CodeInvalid, "role: want an integer, one of 0, 1, 2, 3, 5", kdsim.User{DeptID: deptEng, Role: 1}},
		"role as string":         {`{"role":"2"}`, 400, kdsim.CodeInvalid, "role: want an integer", kdsim.User{DeptID: deptEng, Role: 1}},
		"status 2":               {`{"status":2}`, 400, kdsim.CodeInvalid, "status: want an integer, 0 (enabled) or 1 (disabled)", kdsim.User{DeptID: deptEng, Role: 1}},
		"status as string":       {`{"status":"1"}`, 400, kdsim.CodeInvalid, "status: want an integer", kdsim.User{DeptID: deptEng, Role: 1}},
		"status true":            {`{"status":true}`, 400, kdsim.CodeInvalid, "status: want an integer", kdsim.User{DeptID: deptEng, Role: 1}},
		"valid field then bad":   {`{"deptId":1319678187126486147,"status":9}`, 400, kdsim.CodeInvalid, "status", kdsim.User{DeptID: deptEng, Role: 1}},
		"empty object":           {`{}`, 400, kdsim.CodeInvalid, "no deptId, role or status", kdsim.User{DeptID: deptEng, Role: 1}},
		"empty body":             {``, 400, kdsim.CodeInvalid, "want a JSON object", kdsim.User{DeptID: deptEng, Role: 1}},
		"array body":             {`[1]`, 400, kdsim.CodeInvalid, "want a JSON object", kdsim.User{DeptID: deptEng, Role: 1}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kdsim.Options{})
			createUser(t, f.client, "600", deptEng, "1")
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			rp := f.signed(t, http.MethodPut, "/users/600", body)
			rp.expect(t, tc.status, tc.code, tc.msg)
			rec, _ := f.srv.User("600")
			got := kdsim.User{DeptID: rec.User.DeptID, Role: rec.User.Role, Status: rec.User.Status}
			if got != tc.want {
				t.Errorf("user after the call = %+v, want %+v", got, tc.want)
			}
			wantOps := 1
			if tc.status == 200 {
				wantOps = 2
			}
			if len(rec.Ops) != wantOps {
				t.Errorf("ops = %d, want %d", len(rec.Ops), wantOps)
			}
		})
	}
	t.Run("unknown user", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, kdsim.Options{})
		f.signed(t, http.MethodPut, "/users/601", []byte(`{"status":1}`)).expect(t, 400, kdsim.CodeUserNotFound, "user does not exist")
		if st := f.srv.Stats(); st.UnknownUpdates != 1 || st.Updates != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// TestCodeForms checks that writes answer "code":"0" and reads "code":0.
func TestCodeForms(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	tests := []struct {
		method, path, body string
		wantString         bool
	}{
		{http.MethodPost, "/users", `{"userId":"700","modifyUserInfoReq":{"deptId":"` + deptEng + `","role":"1"}}`, true},
		{http.MethodPut, "/users/700", `{"status":1}`, true},
		{http.MethodGet, "/users/700", ``, false},
		{http.MethodGet, "/userList?offset=0&limit=5", ``, false},
		{http.MethodGet, "/users/count", ``, false},
		{http.MethodGet, "/departmentList", ``, false},
		{http.MethodGet, "/departments/" + deptEng, ``, false},
		{http.MethodDelete, "/users/700", ``, true},
	}
	for _, tc := range tests {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		rp := f.bearer(t, tc.method, tc.path, body)
		if rp.status != 200 || rp.code != "0" || rp.msg != "success" || rp.codeString != tc.wantString {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, rp.status, rp.body)
		}
		if ct := rp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, ct)
		}
	}
}

func TestGetUserRawShape(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	u, err := f.srv.PutUserDirect(kdsim.User{UserID: "800", DeptID: deptMobile, Role: 2, Status: 1, Name: "Zoë \"Q\" <z>\n", Mobile: "+86 138"})
	if err != nil {
		t.Fatal(err)
	}
	rp := f.signed(t, http.MethodGet, "/users/800", nil)
	want := `{"code":0,"msg":"success","data":{"id":"` + u.ID + `","orgId":"` + kdsim.DefaultOrgID +
		`","userId":"800","deptId":"` + deptMobile + `","deptName":"Mobile","mobile":"+86 138","name":"Zoë \"Q\" <z>\n","role":2,"status":1}}`
	if string(rp.body) != want {
		t.Errorf("body\n got %s\nwant %s", rp.body, want)
	}
	f.signed(t, http.MethodGet, "/users/801", nil).expect(t, 400, kdsim.CodeUserNotFound, "user does not exist")
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	// 12 users: Engineering 3, Platform 4, Mobile 2, Sales 3.
	seed := []struct{ id, dept, name string }{
		{"1001", deptEng, "Alice Wong"}, {"1002", deptEng, "Bob"}, {"1003", deptEng, "Carol"},
		{"2001", deptPlatform, "Dave"}, {"2002", deptPlatform, "Erin"}, {"2003", deptPlatform, "Frank"}, {"2004", deptPlatform, "alicia"},
		{"3001", deptMobile, "Grace"}, {"3002", deptMobile, "Heidi"},
		{"999", deptSales, "Ivan"}, {"10000", deptSales, "Judy"}, {"4001", deptSales, "Mallory"},
	}
	for _, s := range seed {
		if _, err := f.srv.PutUserDirect(kdsim.User{UserID: s.id, DeptID: s.dept, Role: 1, Name: s.name}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(us []kdapi.User) []string {
		out := make([]string, len(us))
		for i, u := range us {
			out[i] = string(u.UserID)
		}
		return out
	}
	tests := map[string]struct {
		opts  kdapi.ListUsersOptions
		want  []string
		total int64
	}{
		"first page":          {kdapi.ListUsersOptions{Limit: 3}, []string{"999", "1001", "1002"}, 12},
		"second page":         {kdapi.ListUsersOptions{Offset: 3, Limit: 3}, []string{"1003", "2001", "2002"}, 12},
		"last short page":     {kdapi.ListUsersOptions{Offset: 10, Limit: 5}, []string{"4001", "10000"}, 12},
		"past the end":        {kdapi.ListUsersOptions{Offset: 50, Limit: 5}, []string{}, 12},
		"subtree":             {kdapi.ListUsersOptions{DeptID: deptEng, Limit: 100}, []string{"1001", "1002", "1003", "2001", "2002", "2003", "2004", "3001", "3002"}, 9},
		"direct members only": {kdapi.ListUsersOptions{DeptID: deptEng, IsDirect: true, Limit: 100}, []string{"1001", "1002", "1003"}, 3},
		"root subtree":        {kdapi.ListUsersOptions{DeptID: deptRoot, Limit: 2}, []string{"999", "1001"}, 12},
		"keyword":             {kdapi.ListUsersOptions{KeyWord: "ALIC", Limit: 100}, []string{"1001", "2004"}, 2},
		"keyword in dept":     {kdapi.ListUsersOptions{KeyWord: "ali", DeptID: deptPlatform, Limit: 100}, []string{"2004"}, 1},
		"empty department":    {kdapi.ListUsersOptions{DeptID: deptFinance, Limit: 100}, []string{}, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := f.client.ListUsers(t.Context(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ids(p.Users), cmpopts.EquateEmpty()); diff != "" || p.Total != tc.total {
				t.Errorf("users (-want +got):\n%s total %d, want %d", diff, p.Total, tc.total)
			}
		})
	}
	var all []string
	for u, err := range f.client.AllUsers(t.Context(), kdapi.ListUsersOptions{Limit: 5}) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, string(u.UserID))
	}
	if len(all) != 12 || all[0] != "999" || all[11] != "10000" {
		t.Errorf("AllUsers = %v", all)
	}

	bad := map[string]string{
		"/userList":                             "offset: required",
		"/userList?limit=10":                    "offset: required",
		"/userList?offset=-1&limit=10":          "offset: required, an integer >= 0",
		"/userList?offset=0":                    "limit: required",
		"/userList?offset=0&limit=0":            "limit: required, an integer within 1..100",
		"/userList?offset=0&limit=101":          "limit",
		"/userList?offset=x&limit=1":            "offset",
		"/userList?offset=0&limit=1&deptId=77":  "deptId: department 77 does not exist",
		"/userList?offset=0&limit=1&deptId=a":   "deptId: want a string of digits",
		"/userList?offset=0&limit=1&isDirect=2": "isDirect: want true or false",
	}
	for path, msg := range bad {
		f.signed(t, http.MethodGet, path, nil).expect(t, 400, kdsim.CodeInvalid, msg)
	}
}

func TestCountUsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	for i, d := range []string{deptEng, deptPlatform, deptPlatform, deptSales} {
		createUser(t, f.client, "90"+string(rune('0'+i)), d, "1")
	}
	tests := map[string]struct {
		dept string
		want int64
	}{
		"whole org":   {"", 4},
		"root":        {deptRoot, 4},
		"engineering": {deptEng, 3},
		"platform":    {deptPlatform, 2},
		"finance":     {deptFinance, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n, err := f.client.CountUsers(t.Context(), tc.dept)
			if err != nil || n != tc.want {
				t.Errorf("CountUsers(%q) = %d, %v; want %d", tc.dept, n, err, tc.want)
			}
		})
	}
	rp := f.bearer(t, http.MethodGet, "/users/count", nil)
	if string(rp.body) != `{"total":4,"code":0,"msg":"success"}` {
		t.Errorf("count body = %s", rp.body)
	}
	f.bearer(t, http.MethodGet, "/users/count?deptId=5", nil).expect(t, 400, kdsim.CodeInvalid, "department 5 does not exist")
}

func TestDepartments(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	names := func(ds []kdapi.Department) []string {
		out := make([]string, len(ds))
		for i, d := range ds {
			out[i] = d.Name
		}
		return out
	}
	tests := map[string]struct {
		opts kdapi.ListDepartmentsOptions
		want []string
	}{
		"root's children":     {kdapi.ListDepartmentsOptions{}, []string{"Engineering", "Sales", "Finance"}},
		"explicit root":       {kdapi.ListDepartmentsOptions{DepartmentID: deptRoot}, []string{"Engineering", "Sales", "Finance"}},
		"engineering":         {kdapi.ListDepartmentsOptions{DepartmentID: deptEng}, []string{"Platform", "Mobile"}},
		"leaf":                {kdapi.ListDepartmentsOptions{DepartmentID: deptPlatform}, []string{}},
		"keyword":             {kdapi.ListDepartmentsOptions{KeyWord: "an"}, []string{"Finance"}},
		"keyword, direct too": {kdapi.ListDepartmentsOptions{KeyWord: "plat"}, []string{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ds, err := f.client.ListDepartments(t.Context(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, names(ds), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			for _, d := range ds {
				if d.OrgID != kdsim.DefaultOrgID || d.TenantID != kdsim.DefaultTenantID || len(d.DeptID) != 32 || d.ParentID == "" {
					t.Errorf("department fields: %+v", d)
				}
			}
		})
	}
	d, err := f.client.GetDepartment(t.Context(), deptMobile)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != deptMobile || d.ParentID != deptEng || d.Name != "Mobile" {
		t.Errorf("GetDepartment = %+v", d)
	}
	rp := f.signed(t, http.MethodGet, "/departments/"+deptRoot, nil)
	if !strings.HasPrefix(string(rp.body), `{"id":"`+deptRoot+`","orgId":"`) || !strings.HasSuffix(string(rp.body), `"code":0,"msg":"success"}`) {
		t.Errorf("flat department body = %s", rp.body)
	}
	f.signed(t, http.MethodGet, "/departmentList?departmentId=77", nil).expect(t, 400, kdsim.CodeInvalid, "departmentId: department 77 does not exist")
}

func TestUnknownRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/koodrive/ose/v1/nothing", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1/users", 404, kdsim.CodeNoSuchAPI},
		{http.MethodPost, "/koodrive/ose/v1/users/1", 404, kdsim.CodeNoSuchAPI},
		{http.MethodPatch, "/koodrive/ose/v1/users/1", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1/users/1/x", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1/users/", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1/users/%2E%2E", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1/users/1/..", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1/users/1%2F..%2F2", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1//users/count", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1/departments/.", 404, kdsim.CodeNoSuchAPI},
		{http.MethodDelete, "/koodrive/ose/v1/departments/" + deptEng, 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/koodrive/ose/v1x/users/count", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/", 404, kdsim.CodeNoSuchAPI},
		{http.MethodGet, "/_admin/nothing", 404, kdsim.CodeNoSuchAPI},
	}
	for _, tc := range tests {
		r := newRequest(t, tc.method, f.ts.URL+tc.path, nil)
		r.Header.Set("Authorization", "Bearer+"+testToken.Reveal())
		rp := send(t, r)
		if rp.status != tc.status || rp.code != tc.code {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, rp.status, rp.body)
		}
	}
	// An unknown API path still needs credentials.
	r := newRequest(t, http.MethodGet, f.api("/nothing"), nil)
	send(t, r).expect(t, 401, kdsim.CodeAuth, "missing Authorization")
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kdsim.Options{})
	body := []byte(`{"userId":"1","x":"` + strings.Repeat("a", 1<<20) + `"}`)
	f.bearer(t, http.MethodPost, "/users", body).expect(t, http.StatusRequestEntityTooLarge, kdsim.CodeInvalid, "larger than 1 MiB")
	if len(f.srv.Users()) != 0 {
		t.Error("an oversized create was applied")
	}
}
