package scim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kdsync/kdsync/outcome"
)

// TestUserLifecycle: every write publishes exactly the events it implies,
// decoded by the consumer's own decoder, and a write that changes nothing
// for KooDrive publishes nothing.
func TestUserLifecycle(t *testing.T) {
	f := newFixture(t, issueMapping)
	list := f.must(200, "GET", `/Users?filter=userName+eq+"sam@contoso.example"`, nil)
	if list["totalResults"] != float64(0) {
		t.Fatalf("lookup before create: %v", list)
	}
	u := f.must(201, "POST", "/Users", entraUser("sam@contoso.example", "1008600000000001", "Engineering", "True"))
	id, _ := u["id"].(string)
	if id == "" || u["active"] != true {
		t.Fatalf("created %v", u)
	}
	if emails := u["emails"].([]any); emails[0].(map[string]any)["primary"] != true {
		t.Errorf("primary \"True\" not stored as a boolean: %v", emails)
	}
	got := f.must(200, "GET", "/Users/"+id, nil)
	if got["userName"] != "sam@contoso.example" || got["meta"].(map[string]any)["version"] == nil {
		t.Errorf("GET: %v", got)
	}
	// Entra ID: PascalCase ops, a path into the enterprise extension.
	patch := func(ops ...map[string]any) map[string]any {
		return map[string]any{"schemas": []string{patchOpSchema}, "Operations": ops}
	}
	f.must(200, "PATCH", "/Users/"+id, patch(map[string]any{"op": "Replace", "path": enterpriseSchema + ":department", "value": "Sales"}))
	// The same PATCH again (a retry) changes nothing.
	f.must(200, "PATCH", "/Users/"+id, patch(map[string]any{"op": "Replace", "path": enterpriseSchema + ":department", "value": "Sales"}))
	// A change KooDrive does not hold: no event.
	f.must(200, "PATCH", "/Users/"+id, patch(map[string]any{"op": "Add", "path": `emails[type eq "work"].value`, "value": "sam.lee@contoso.example"}))
	// Entra ID: "active": "False" as a string.
	dis := f.must(200, "PATCH", "/Users/"+id, patch(map[string]any{"op": "Replace", "path": "active", "value": "False"}))
	if dis["active"] != false {
		t.Errorf("active after \"False\": %v", dis["active"])
	}
	f.must(200, "PATCH", "/Users/"+id, patch(map[string]any{"op": "replace", "value": map[string]any{"active": true}}))
	// A group named as the mapping's admin group makes the user role 3.
	g := f.must(201, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "KooDrive Admins"})
	gid := g["id"].(string)
	f.must(200, "PATCH", "/Groups/"+gid, patch(map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"value": id}}}))
	withGroup := f.must(200, "GET", "/Users/"+id, nil)
	if gs, _ := withGroup["groups"].([]any); len(gs) != 1 || gs[0].(map[string]any)["display"] != "KooDrive Admins" {
		t.Errorf("user's groups: %v", withGroup["groups"])
	}
	// Entra ID removes members with a value.
	f.must(200, "PATCH", "/Groups/"+gid, patch(map[string]any{"op": "Remove", "path": "members", "value": []any{map[string]any{"value": id}}}))
	f.must(204, "DELETE", "/Users/"+id, nil)
	f.must(404, "GET", "/Users/"+id, nil)

	want := []string{
		"hired 1008600000000001 dept=" + engineering + " role=1 status=0",
		"changed 1008600000000001 dept=" + sales,
		"disabled 1008600000000001",
		"enabled 1008600000000001",
		"changed 1008600000000001 role=3",
		"changed 1008600000000001 role=1",
		"deleted 1008600000000001",
	}
	if d := cmp.Diff(want, summary(f.published("IDENTITY"))); d != "" {
		t.Errorf("events (-want +got)\n%s", d)
	}
	for _, e := range f.published("IDENTITY") {
		if e.Source != DefaultSource || !strings.HasPrefix(e.ID, "scim:"+id+":") {
			t.Errorf("event %s from %s", e.ID, e.Source)
		}
	}
	// Only the group and its name index remain... the group only.
	if keys := f.keys(); len(keys) != 1 || keys[0] != groupPrefix+gid {
		t.Errorf("keys left: %v", keys)
	}
}

// TestOktaFlow: Okta looks up, creates with POST and updates with PUT.
func TestOktaStyleUpdates(t *testing.T) {
	f := newFixture(t, issueMapping)
	user := map[string]any{
		"schemas":  []string{userSchema, enterpriseSchema},
		"userName": "kim@okta.example", "externalId": "1008600000000002", "active": true,
		"name":     map[string]any{"givenName": "Kim", "familyName": "Ng"},
		"password": "s3cret!", enterpriseSchema: map[string]any{"department": "Sales"},
	}
	u := f.must(201, "POST", "/Users", user)
	id := u["id"].(string)
	if _, ok := u["password"]; ok {
		t.Error("the password is answered")
	}
	f.must(409, "POST", "/Users", user) // Okta's retry of the create
	user["id"] = id
	user["active"] = false
	f.must(200, "PUT", "/Users/"+id, user)
	user["active"] = true
	user[enterpriseSchema] = map[string]any{"department": "Engineering"}
	f.must(200, "PUT", "/Users/"+id, user)
	want := []string{
		"hired 1008600000000002 dept=" + sales + " role=1 status=0",
		"disabled 1008600000000002",
		"changed 1008600000000002 dept=" + engineering,
		"enabled 1008600000000002",
	}
	if d := cmp.Diff(want, summary(f.published("IDENTITY"))); d != "" {
		t.Errorf("events (-want +got)\n%s", d)
	}
}

// TestScope: an out-of-scope user never reaches KooDrive; one who leaves
// scope is disabled, and enabled on return.
func TestScope(t *testing.T) {
	f := newFixture(t, issueMapping)
	c := entraUser("con@x", "1008600000000003", "Sales", "True")
	c["userType"] = "Contractor"
	cu := f.must(201, "POST", "/Users", c)
	f.must(200, "PATCH", "/Users/"+cu["id"].(string), map[string]any{"schemas": []string{patchOpSchema},
		"Operations": []any{map[string]any{"op": "replace", "path": "displayName", "value": "Con"}}})
	e := f.must(201, "POST", "/Users", entraUser("emp@x", "1008600000000004", "Sales", "True"))
	eid := e["id"].(string)
	setType := func(v string) {
		f.must(200, "PATCH", "/Users/"+eid, map[string]any{"schemas": []string{patchOpSchema},
			"Operations": []any{map[string]any{"op": "replace", "path": "userType", "value": v}}})
	}
	setType("Contractor")
	setType("Employee")
	want := []string{
		"hired 1008600000000004 dept=" + sales + " role=1 status=0",
		"disabled 1008600000000004",
		"enabled 1008600000000004",
	}
	if d := cmp.Diff(want, summary(f.published("IDENTITY"))); d != "" {
		t.Errorf("events (-want +got)\n%s", d)
	}

	skip := newFixture(t, issueMapping+"skipOutOfScopeDeletions: true\n")
	s := skip.must(201, "POST", "/Users", entraUser("emp@x", "1008600000000005", "Sales", "True"))
	skip.must(200, "PATCH", "/Users/"+s["id"].(string), map[string]any{"schemas": []string{patchOpSchema},
		"Operations": []any{map[string]any{"op": "replace", "path": "userType", "value": "Contractor"}}})
	if got := summary(skip.published("IDENTITY")); len(got) != 1 {
		t.Errorf("with skipOutOfScopeDeletions: %v, want the hire only", got)
	}
}

// TestMappingFailure: a user the mapping cannot map is stored (the IdP
// gets its 201) but never reaches KooDrive: it is dead-lettered with
// reason mapping, once, naming the expression and the value; fixed by a
// later write, it is hired.
func TestMappingFailure(t *testing.T) {
	f := newFixture(t, issueMapping)
	u := f.must(201, "POST", "/Users", entraUser("mia@x", "1008600000000006", "Marketing", "True"))
	id := u["id"].(string)
	f.must(200, "PATCH", "/Users/"+id, map[string]any{"schemas": []string{patchOpSchema},
		"Operations": []any{map[string]any{"op": "replace", "path": "displayName", "value": "Mia"}}})
	if evs := f.published("IDENTITY"); len(evs) != 0 {
		t.Fatalf("published %v for an unmappable user", summary(evs))
	}
	dl := f.raw("KDSYNC_DLQ")
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	h := dl[0].Header
	if h.Get(outcome.HdrErrorClass) != "mapping" || !strings.Contains(h.Get(outcome.HdrReason), "departments[enterprise.department]") ||
		!strings.Contains(h.Get(outcome.HdrReason), "Marketing") || !strings.HasPrefix(dl[0].Subject, "kdsync.dlq.mapping.hired.") {
		t.Errorf("dead letter %s %v", dl[0].Subject, h)
	}
	if outs := f.raw("KDSYNC_OUTCOMES"); len(outs) != 1 || !strings.Contains(string(outs[0].Data), `"reason":"mapping"`) {
		t.Errorf("outcomes: %d", len(outs))
	}
	f.must(200, "PATCH", "/Users/"+id, map[string]any{"schemas": []string{patchOpSchema},
		"Operations": []any{map[string]any{"op": "replace", "path": enterpriseSchema + ":department", "value": "Sales"}}})
	want := []string{"hired 1008600000000006 dept=" + sales + " role=1 status=0"}
	if d := cmp.Diff(want, summary(f.published("IDENTITY"))); d != "" {
		t.Errorf("events (-want +got)\n%s", d)
	}
}

// TestBadInput: each is a SCIM error with its scimType, and nothing is
// stored or published.
func TestBadInput(t *testing.T) {
	f := newFixture(t, issueMapping)
	u := f.must(201, "POST", "/Users", entraUser("base@x", "1008600000000007", "Sales", "True"))
	id := u["id"].(string)
	_, _, hdr := f.do("GET", "/Users/"+id, nil)
	etagNow := hdr.Get("ETag")
	keysBefore, eventsBefore := f.keys(), len(f.raw("IDENTITY"))
	huge := `{"schemas":["` + userSchema + `"],"userName":"big@x","displayName":"` + strings.Repeat("x", 10<<20) + `"}`
	patchDept := map[string]any{"schemas": []string{patchOpSchema}, "Operations": []any{map[string]any{"op": "replace", "path": enterpriseSchema + ":department", "value": "Engineering"}}}
	tests := map[string]struct {
		method, path string
		body         any
		headers      []string
		token        string
		status       int
		scimType     string
	}{
		"malformed JSON":          {method: "POST", path: "/Users", body: `{"schemas": [`, status: 400, scimType: invalidSyntax},
		"not an object":           {method: "POST", path: "/Users", body: `[1]`, status: 400, scimType: invalidSyntax},
		"unknown schema":          {method: "POST", path: "/Users", body: map[string]any{"schemas": []string{userSchema, "urn:example:custom"}, "userName": "x@x"}, status: 400, scimType: invalidValue},
		"unknown extension":       {method: "POST", path: "/Users", body: map[string]any{"schemas": []string{userSchema}, "userName": "x@x", "urn:example:ext:User": map[string]any{}}, status: 400, scimType: invalidValue},
		"no userName":             {method: "POST", path: "/Users", body: map[string]any{"schemas": []string{userSchema}}, status: 400, scimType: invalidValue},
		"active not a boolean":    {method: "POST", path: "/Users", body: map[string]any{"schemas": []string{userSchema}, "userName": "x@x", "active": "maybe"}, status: 400, scimType: invalidValue},
		"duplicate userName":      {method: "POST", path: "/Users", body: entraUser("BASE@x", "1", "Sales", "True"), status: 409, scimType: uniqueness},
		"10 MB body":              {method: "POST", path: "/Users", body: huge, status: 413},
		"invalid filter":          {method: "GET", path: `/Users?filter=userName+eq+"unterminated`, status: 400, scimType: invalidFilter},
		"wrong token":             {method: "POST", path: "/Users", body: entraUser("tok@x", "1", "Sales", "True"), token: "wrong-token-0123456789abcdef", status: 401},
		"If-Match mismatch":       {method: "PATCH", path: "/Users/" + id, body: patchDept, headers: []string{"If-Match", `W/"1"`}, status: 412},
		"PATCH without schema":    {method: "PATCH", path: "/Users/" + id, body: map[string]any{"Operations": []any{}}, status: 400, scimType: invalidSyntax},
		"PATCH bad op":            {method: "PATCH", path: "/Users/" + id, body: map[string]any{"schemas": []string{patchOpSchema}, "Operations": []any{map[string]any{"op": "move", "path": "active"}}}, status: 400, scimType: invalidSyntax},
		"PATCH bad path":          {method: "PATCH", path: "/Users/" + id, body: map[string]any{"schemas": []string{patchOpSchema}, "Operations": []any{map[string]any{"op": "replace", "path": "emails[type eq", "value": "x"}}}, status: 400, scimType: invalidPath},
		"PATCH id":                {method: "PATCH", path: "/Users/" + id, body: map[string]any{"schemas": []string{patchOpSchema}, "Operations": []any{map[string]any{"op": "replace", "path": "id", "value": "other"}}}, status: 400, scimType: mutability},
		"PUT another id":          {method: "PUT", path: "/Users/" + id, body: map[string]any{"schemas": []string{userSchema}, "id": "other", "userName": "base@x"}, status: 400, scimType: mutability},
		"group with a stranger":   {method: "POST", path: "/Groups", body: map[string]any{"schemas": []string{groupSchema}, "displayName": "G", "members": []any{map[string]any{"value": "nobody"}}}, status: 400, scimType: invalidValue},
		"unknown user":            {method: "PATCH", path: "/Users/nobody", body: patchDept, status: 404},
		"wrong content type":      {method: "POST", path: "/Users", body: `userName=x`, headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, scimType: invalidSyntax},
		"bad startIndex":          {method: "GET", path: "/Users?startIndex=one", status: 400, scimType: invalidValue},
		"no such endpoint":        {method: "GET", path: "/Bulk", status: 404},
		"If-Match on delete, old": {method: "DELETE", path: "/Users/" + id, headers: []string{"If-Match", `W/"1"`}, status: 412},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			headers := tc.headers
			if tc.token != "" {
				headers = append(headers, "Authorization", "Bearer "+tc.token)
			}
			code, out, _ := f.do(tc.method, tc.path, tc.body, headers...)
			if code != tc.status {
				t.Fatalf("%d, want %d: %v", code, tc.status, out)
			}
			if out["schemas"] == nil || !slices.Contains(toStrings(out["schemas"]), errorSchema) || out["status"] != fmt.Sprint(tc.status) || out["detail"] == "" {
				t.Errorf("not a SCIM error document: %v", out)
			}
			if got, _ := out["scimType"].(string); got != tc.scimType {
				t.Errorf("scimType %q, want %q (%v)", got, tc.scimType, out["detail"])
			}
		})
	}
	if d := cmp.Diff(keysBefore, f.keys()); d != "" {
		t.Errorf("keys changed (-before +after)\n%s", d)
	}
	if n := len(f.raw("IDENTITY")); n != eventsBefore {
		t.Errorf("%d events published by bad input", n-eventsBefore)
	}
	// The right ETag works.
	f.must(200, "PATCH", "/Users/"+id, patchDept, "If-Match", etagNow)
}

func toStrings(v any) []string {
	var out []string
	for _, e := range asList(v) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestListAndFilter: filters by userName, externalId, id, with and/or,
// and paging.
func TestListAndFilter(t *testing.T) {
	f := newFixture(t, issueMapping)
	ids := map[string]string{}
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("user%d@x", i)
		u := f.must(201, "POST", "/Users", entraUser(name, fmt.Sprint(1008600000000100+i), "Sales", "True"))
		ids[name] = u["id"].(string)
	}
	count := func(q string) (int, int) {
		out := f.must(200, "GET", "/Users?"+q, nil)
		return int(out["totalResults"].(float64)), len(out["Resources"].([]any))
	}
	tests := map[string]struct {
		q            string
		total, items int
	}{
		"userName eq, other case": {`filter=userName+eq+"USER2@x"`, 1, 1},
		"externalId eq":           {`filter=externalId+eq+"1008600000000103"`, 1, 1},
		"id eq":                   {`filter=id+eq+"` + ids["user4@x"] + `"`, 1, 1},
		"or":                      {`filter=userName+eq+"user1@x"+or+externalId+eq+"1008600000000105"`, 2, 2},
		"and, none":               {`filter=userName+eq+"user1@x"+and+externalId+eq+"1008600000000105"`, 0, 0},
		"and":                     {`filter=userName+eq+"user1@x"+and+active+eq+true`, 1, 1},
		"valuePath":               {`filter=emails[type+eq+"work"+and+value+sw+"user3"]`, 1, 1},
		"no filter, paged":        {`startIndex=2&count=2`, 5, 2},
		"past the end":            {`startIndex=5&count=10`, 5, 1},
		"count 0":                 {`count=0`, 5, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			total, items := count(tc.q)
			if total != tc.total || items != tc.items {
				t.Errorf("%s: total %d items %d, want %d %d", tc.q, total, items, tc.total, tc.items)
			}
		})
	}
	out := f.must(200, "GET", "/Users?startIndex=1&count=5", nil)
	var seen []string
	for _, r := range out["Resources"].([]any) {
		seen = append(seen, r.(map[string]any)["id"].(string))
	}
	if !slices.IsSorted(seen) || len(seen) != 5 {
		t.Errorf("page: %v", seen)
	}
}

// TestDiscovery: the three discovery endpoints answer.
func TestDiscovery(t *testing.T) {
	f := newFixture(t, issueMapping)
	spc := f.must(200, "GET", "/ServiceProviderConfig", nil)
	if spc["patch"].(map[string]any)["supported"] != true || spc["etag"].(map[string]any)["supported"] != true {
		t.Errorf("ServiceProviderConfig: %v", spc)
	}
	if rt := f.must(200, "GET", "/ResourceTypes", nil); rt["totalResults"] != float64(2) {
		t.Errorf("ResourceTypes: %v", rt)
	}
	if sc := f.must(200, "GET", "/Schemas/"+enterpriseSchema, nil); sc["name"] != "EnterpriseUser" {
		t.Errorf("Schemas: %v", sc)
	}
	if sc := f.must(200, "GET", "/Schemas", nil); sc["totalResults"] != float64(3) {
		t.Errorf("Schemas: %v", sc)
	}
	code, _, hdr := f.do("GET", "/ServiceProviderConfig", nil, "Authorization", "")
	if code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("without a token: %d", code)
	}
}

// TestNATSDown: with NATS gone, a write is answered 503 with Retry-After
// and nothing is half done: after NATS returns, the user is not there and
// nothing was published; the retried request succeeds once.
func TestNATSDown(t *testing.T) {
	f := newFixture(t, issueMapping)
	f.ns.Stop()
	waitFor(t, func() bool { return !f.nc.IsConnected() })
	code, out, hdr := f.do("POST", "/Users", entraUser("down@x", "1008600000000008", "Sales", "True"))
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("POST with NATS down: %d %v", code, out)
	}
	if err := f.ns.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return f.nc.IsConnected() })
	if keys := f.keys(); len(keys) != 0 {
		t.Errorf("stored while NATS was down: %v", keys)
	}
	if n := len(f.raw("IDENTITY")); n != 0 {
		t.Errorf("%d events published while NATS was down", n)
	}
	// The IdP retries.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, _ = f.do("POST", "/Users", entraUser("down@x", "1008600000000008", "Sales", "True"))
		if code == http.StatusCreated || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the JetStream restart's leader election; polled, not a sync
	}
	if code != http.StatusCreated {
		t.Fatalf("retry: %d %v", code, out)
	}
	if got := summary(f.published("IDENTITY")); len(got) != 1 {
		t.Errorf("events: %v", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
