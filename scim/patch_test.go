package scim

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	filter "github.com/scim2/filter-parser/v2"
)

func mustDecode(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := decode([]byte(s))
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return m
}

// TestApplyPatch covers the paths IdPs send: plain, sub-attribute,
// enterprise extension, filtered, without a path, and Entra's quirks.
func TestApplyPatch(t *testing.T) {
	const base = `{"userName":"a@x","active":true,"name":{"givenName":"A"},
		"emails":[{"type":"work","value":"a@x","primary":true},{"type":"home","value":"a@home"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales"}}`
	tests := map[string]struct {
		ops     string
		want    string // JSON of the attributes checked, by path
		check   []string
		scimErr string
	}{
		"replace active with Entra's PascalCase and string": {
			ops: `[{"op":"Replace","path":"active","value":"False"}]`, check: []string{"active"}, want: `[false]`,
		},
		"enterprise department": {
			ops:   `[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Engineering"}]`,
			check: []string{enterpriseSchema}, want: `[{"department":"Engineering"}]`,
		},
		"enterprise manager in an extension the user lacks": {
			ops:   `[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"mgr-1"},{"op":"remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]`,
			check: []string{enterpriseSchema}, want: `[{"manager":"mgr-1"}]`,
		},
		"filtered path, existing element": {
			ops:   `[{"op":"replace","path":"emails[type eq \"work\"].value","value":"b@x"}]`,
			check: []string{"emails"}, want: `[[{"type":"work","value":"b@x","primary":true},{"type":"home","value":"a@home"}]]`,
		},
		"filtered path, Add creates the element": {
			ops:   `[{"op":"Add","path":"phoneNumbers[type eq \"mobile\"].value","value":"+1 555"}]`,
			check: []string{"phoneNumbers"}, want: `[[{"type":"mobile","value":"+1 555"}]]`,
		},
		"filtered remove": {
			ops:   `[{"op":"remove","path":"emails[type eq \"home\"]"}]`,
			check: []string{"emails"}, want: `[[{"type":"work","value":"a@x","primary":true}]]`,
		},
		"sub-attribute": {
			ops:   `[{"op":"replace","path":"name.familyName","value":"B"}]`,
			check: []string{"name"}, want: `[{"givenName":"A","familyName":"B"}]`,
		},
		"no path: attributes, a dotted path and an extension URN": {
			ops:   `[{"op":"replace","value":{"active":false,"name.givenName":"Z","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"HR"}}]`,
			check: []string{"active", "name", enterpriseSchema}, want: `[false,{"givenName":"Z"},{"department":"HR"}]`,
		},
		"no path: the extension as an object": {
			ops:   `[{"op":"add","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"costCenter":"42"}}}]`,
			check: []string{enterpriseSchema}, want: `[{"department":"Sales","costCenter":"42"}]`,
		},
		"attribute names in any case": {
			ops:   `[{"op":"replace","path":"DisplayName","value":"D"},{"op":"replace","path":"ACTIVE","value":false}]`,
			check: []string{"displayName", "active"}, want: `["D",false]`,
		},
		"remove an attribute": {
			ops: `[{"op":"remove","path":"name"}]`, check: []string{"name"}, want: `[null]`,
		},
		"add to a multi-valued attribute appends": {
			ops:   `[{"op":"add","path":"emails","value":[{"type":"other","value":"o@x"}]}]`,
			check: []string{"emails"}, want: `[[{"type":"work","value":"a@x","primary":true},{"type":"home","value":"a@home"},{"type":"other","value":"o@x"}]]`,
		},
		"replace matching nothing": {
			ops: `[{"op":"replace","path":"emails[type eq \"fax\" or value co \"x\"].value","value":"f"}]`, scimErr: "",
			check: []string{"emails"}, want: `[[{"type":"work","value":"f","primary":true},{"type":"home","value":"a@home"}]]`,
		},
		"filtered path with no equality to build from": {
			ops: `[{"op":"add","path":"emails[value co \"nothing\"].type","value":"work"}]`, scimErr: noTarget,
		},
		"unknown schema": {
			ops: `[{"op":"replace","path":"urn:example:ext:User:x","value":"1"}]`, scimErr: invalidPath,
		},
		"read-only": {
			ops: `[{"op":"replace","path":"meta","value":{}}]`, scimErr: mutability,
		},
		"remove without a path": {
			ops: `[{"op":"remove"}]`, scimErr: noTarget,
		},
		"no path, value not an object": {
			ops: `[{"op":"add","value":"x"}]`, scimErr: invalidValue,
		},
		"sub-attribute of a simple attribute": {
			ops: `[{"op":"add","path":"userName.first","value":"x"}]`, scimErr: invalidPath,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := mustDecode(t, base)
			var raw []any
			if err := json.Unmarshal([]byte(tc.ops), &raw); err != nil {
				t.Fatal(err)
			}
			ops, perr := parsePatch(map[string]any{"schemas": []any{patchOpSchema}, "Operations": raw})
			if perr != nil {
				if perr.ScimType == tc.scimErr && tc.scimErr != "" {
					return
				}
				t.Fatalf("parsePatch: %v", perr)
			}
			err := applyPatch(r, "id-1", ops)
			if tc.scimErr != "" {
				if err == nil || err.ScimType != tc.scimErr {
					t.Fatalf("applyPatch: %v, want scimType %s", err, tc.scimErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			normalize(r)
			got := make([]any, len(tc.check))
			for i, p := range tc.check {
				got[i] = r[p]
			}
			var want []any
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			gb, _ := json.Marshal(got)
			var gotPlain []any
			if err := json.Unmarshal(gb, &gotPlain); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, gotPlain); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// TestGroupMemberPatches: Okta's members[value eq ...] removal, Entra's
// remove with a value, adds without doubles.
func TestGroupMemberPatches(t *testing.T) {
	g := mustDecode(t, `{"displayName":"G","members":[{"value":"u1"},{"value":"u2"}]}`)
	steps := []struct{ ops, want string }{
		{`[{"op":"Add","path":"members","value":[{"value":"u2"},{"value":"u3"}]}]`, "u1,u2,u3"},
		{`[{"op":"remove","path":"members[value eq \"u1\"]"}]`, "u2,u3"},
		{`[{"op":"Remove","path":"members","value":[{"value":"u3"}]}]`, "u2"},
		{`[{"op":"replace","path":"members","value":[{"value":"u9"}]}]`, "u9"},
		{`[{"op":"replace","value":{"id":"g-1","displayName":"H"}}]`, "u9"},
		{`[{"op":"remove","path":"members"}]`, ""},
	}
	for _, st := range steps {
		var raw []any
		if err := json.Unmarshal([]byte(st.ops), &raw); err != nil {
			t.Fatal(err)
		}
		ops, perr := parsePatch(map[string]any{"schemas": []any{patchOpSchema}, "Operations": raw})
		if perr != nil {
			t.Fatal(perr)
		}
		if err := applyPatch(g, "g-1", ops); err != nil {
			t.Fatalf("%s: %v", st.ops, err)
		}
		if got := strings.Join(memberIDs(g), ","); got != st.want {
			t.Errorf("%s: members %s, want %s", st.ops, got, st.want)
		}
	}
	if g["displayName"] != "H" {
		t.Errorf("displayName %v", g["displayName"])
	}
	ops, _ := parsePatch(map[string]any{"schemas": []any{patchOpSchema}, "Operations": []any{map[string]any{"op": "replace", "path": "id", "value": "other"}}})
	if err := applyPatch(g, "g-1", ops); err == nil || err.ScimType != mutability {
		t.Errorf("changing the id: %v", err)
	}
}

// TestMatch evaluates filters parsed by scim2/filter-parser.
func TestMatch(t *testing.T) {
	u := mustDecode(t, `{"id":"abc","userName":"Alice@X","externalId":"E1","active":true,"title":null,
		"emails":[{"type":"work","value":"alice@x"},{"type":"home","value":"al@home"}],
		"meta":{"lastModified":"2026-05-01T00:00:00Z"},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales","employeeNumber":7}}`)
	tests := map[string]bool{
		`userName eq "alice@x"`:                       true,  // case-insensitive
		`externalId eq "e1"`:                          false, // caseExact
		`externalId eq "E1"`:                          true,
		`id eq "abc"`:                                 true,
		`id eq "ABC"`:                                 false,
		`userName eq "alice@x" and active eq true`:    true,
		`userName eq "bob@x" or externalId eq "E1"`:   true,
		`userName eq "bob@x" or externalId eq "E2"`:   false,
		`not (active eq true)`:                        false,
		`emails[type eq "work" and value co "alice"]`: true,
		`emails[type eq "work" and value co "home"]`:  false,
		`emails.value ew "@home"`:                     true,
		`emails co "al@"`:                             true,
		`userName sw "ali"`:                           true,
		`title pr`:                                    false,
		`userName pr`:                                 true,
		`meta.lastModified gt "2026-01-01T00:00:00Z"`: true,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales"`: true,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber ge 7`:   true,
		`nickName eq "x"`: false,
		`active ne false`: true,
	}
	for f, want := range tests {
		e, perr := parseFilter(f)
		if perr != nil {
			t.Errorf("%s: %v", f, perr)
			continue
		}
		if got := match(u, e); got != want {
			t.Errorf("%s: %v, want %v", f, got, want)
		}
	}
	for _, bad := range []string{`userName eq`, `userName eq "x`, `(userName eq "x"`, `userName xx "y"`, `emails[type eq "w"`} {
		if _, err := parseFilter(bad); err == nil || err.ScimType != invalidFilter {
			t.Errorf("%s: %v, want invalidFilter", bad, err)
		}
	}
	if name, ok := userNameEq(mustFilter(t, `UserName EQ "a@x"`)); !ok || name != "a@x" {
		t.Errorf("userNameEq: %q %v", name, ok)
	}
	if _, ok := userNameEq(mustFilter(t, `userName eq "a@x" and active eq true`)); ok {
		t.Error("userNameEq took a compound filter")
	}
}

func mustFilter(t *testing.T, s string) filter.Expression {
	t.Helper()
	e, err := parseFilter(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestCrashBetweenWriteAndPublish: a record stored with its events but
// killed before they were published (simulated by writing the record
// as writeUser does, then not publishing) is finished by the next access
// and by Sweep, under the same Nats-Msg-Id: the events are published once.
func TestCrashBetweenWriteAndPublish(t *testing.T) {
	f := newFixture(t, issueMapping)
	ctx := context.Background()
	// Two users: one finished by Sweep, one by the IdP's retry.
	for i, id := range []string{"crash-sweep", "crash-retry"} {
		b, err := json.Marshal(entraUser(id+"@x", "100860000000099"+string(rune('0'+i)), "Sales", "True"))
		if err != nil {
			t.Fatal(err)
		}
		res := mustDecode(t, string(b))
		if e := checkUser(res); e != nil {
			t.Fatal(e)
		}
		next := userRecord{Resource: res}
		f.srv.remap(&next, &userRecord{}, id, 0)
		if len(next.Pending) != 1 {
			t.Fatalf("pending %d", len(next.Pending))
		}
		if _, err := f.srv.st.put(ctx, userPrefix+id, &next, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.raw("IDENTITY")); n != 0 {
		t.Fatalf("%d events before the crash is recovered", n)
	}
	// The retry of the PATCH that crashed: the pending hire goes out first.
	f.must(200, "PATCH", "/Users/crash-retry", map[string]any{"schemas": []string{patchOpSchema},
		"Operations": []any{map[string]any{"op": "replace", "path": "displayName", "value": "R"}}})
	f.srv.now = func() time.Time { return time.Now().Add(time.Hour) } // past the sweep's grace
	n, err := f.srv.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep: %d, %v; want 1 resource", n, err)
	}
	// Sweeping again, and another access, publish nothing more.
	if n, err := f.srv.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second Sweep: %d, %v", n, err)
	}
	f.must(200, "GET", "/Users/crash-sweep", nil)
	got := summary(f.published("IDENTITY"))
	want := []string{"hired 1008600000000991 dept=" + sales + " role=1 status=0", "hired 1008600000000990 dept=" + sales + " role=1 status=0"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got)\n%s", d)
	}
}
