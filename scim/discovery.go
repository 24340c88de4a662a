package scim

import (
	"net/http"
	"strings"
)

// The discovery endpoints (RFC 7644 section 4): what this service
// provider supports, its resource types and their schemas.

func (s *Server) serviceProviderConfig(w http.ResponseWriter, r *http.Request) {
	s.write(w, http.StatusOK, 0, map[string]any{
		"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": "https://github.com/kdsync/kdsync/blob/main/docs/scim.md",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": s.opts.MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type": "oauthbearertoken", "name": "Bearer token", "primary": true,
			"description": "Authorization: Bearer <KDSYNC_SCIM_TOKEN>",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": "https://" + r.Host + Prefix + "/ServiceProviderConfig"},
	})
}

func (s *Server) resourceTypes(w http.ResponseWriter, r *http.Request) {
	types := []map[string]any{
		{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"}, "id": "User", "name": "User",
			"endpoint": "/Users", "description": "User Account", "schema": userSchema,
			"schemaExtensions": []any{map[string]any{"schema": enterpriseSchema, "required": false}},
			"meta":             map[string]any{"resourceType": "ResourceType", "location": location(r, "ResourceTypes", "User")}},
		{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"}, "id": "Group", "name": "Group",
			"endpoint": "/Groups", "description": "Group", "schema": groupSchema,
			"meta": map[string]any{"resourceType": "ResourceType", "location": location(r, "ResourceTypes", "Group")}},
	}
	s.listOrOne(w, r, types)
}

func (s *Server) schemas(w http.ResponseWriter, r *http.Request) {
	s.listOrOne(w, r, []map[string]any{
		schemaDoc(r, userSchema, "User", "User Account", userAttrs),
		schemaDoc(r, enterpriseSchema, "EnterpriseUser", "Enterprise User", enterpriseAttrs),
		schemaDoc(r, groupSchema, "Group", "Group", groupAttrs),
	})
}

// listOrOne answers a list of docs, or the one named by the path's id.
func (s *Server) listOrOne(w http.ResponseWriter, r *http.Request, docs []map[string]any) {
	id := r.PathValue("id")
	if id == "" {
		res := make([]any, len(docs))
		for i, d := range docs {
			res[i] = d
		}
		s.write(w, http.StatusOK, 0, listResponse(len(res), 1, res))
		return
	}
	for _, d := range docs {
		if strings.EqualFold(d["id"].(string), id) {
			s.write(w, http.StatusOK, 0, d)
			return
		}
	}
	s.writeError(w, notFound("schema or resource type", id))
}

// attr describes an attribute for /Schemas.
type attr struct {
	name, typ           string
	multi, required     bool
	caseExact, readOnly bool
	sub                 []attr
}

func (a attr) doc() map[string]any {
	mut := "readWrite"
	if a.readOnly {
		mut = "readOnly"
	}
	d := map[string]any{"name": a.name, "type": a.typ, "multiValued": a.multi, "required": a.required,
		"caseExact": a.caseExact, "mutability": mut, "returned": "default", "uniqueness": "none"}
	if a.name == "userName" {
		d["uniqueness"] = "server"
	}
	if len(a.sub) > 0 {
		subs := make([]any, len(a.sub))
		for i, s := range a.sub {
			subs[i] = s.doc()
		}
		d["subAttributes"] = subs
	}
	return d
}

func schemaDoc(r *http.Request, id, name, desc string, attrs []attr) map[string]any {
	as := make([]any, len(attrs))
	for i, a := range attrs {
		as[i] = a.doc()
	}
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Schema"}, "id": id, "name": name,
		"description": desc, "attributes": as,
		"meta": map[string]any{"resourceType": "Schema", "location": location(r, "Schemas", id)}}
}

var (
	multiSub  = []attr{{name: "value", typ: "string"}, {name: "display", typ: "string"}, {name: "type", typ: "string"}, {name: "primary", typ: "boolean"}}
	userAttrs = []attr{
		{name: "userName", typ: "string", required: true},
		{name: "externalId", typ: "string", caseExact: true},
		{name: "name", typ: "complex", sub: []attr{{name: "formatted", typ: "string"}, {name: "familyName", typ: "string"},
			{name: "givenName", typ: "string"}, {name: "middleName", typ: "string"}, {name: "honorificPrefix", typ: "string"},
			{name: "honorificSuffix", typ: "string"}}},
		{name: "displayName", typ: "string"}, {name: "nickName", typ: "string"}, {name: "profileUrl", typ: "reference"},
		{name: "title", typ: "string"}, {name: "userType", typ: "string"}, {name: "preferredLanguage", typ: "string"},
		{name: "locale", typ: "string"}, {name: "timezone", typ: "string"}, {name: "active", typ: "boolean"},
		{name: "emails", typ: "complex", multi: true, sub: multiSub},
		{name: "phoneNumbers", typ: "complex", multi: true, sub: multiSub},
		{name: "addresses", typ: "complex", multi: true, sub: []attr{{name: "formatted", typ: "string"}, {name: "streetAddress", typ: "string"},
			{name: "locality", typ: "string"}, {name: "region", typ: "string"}, {name: "postalCode", typ: "string"},
			{name: "country", typ: "string"}, {name: "type", typ: "string"}, {name: "primary", typ: "boolean"}}},
		{name: "roles", typ: "complex", multi: true, sub: multiSub},
		{name: "entitlements", typ: "complex", multi: true, sub: multiSub},
		{name: "groups", typ: "complex", multi: true, readOnly: true, sub: multiSub},
	}
	enterpriseAttrs = []attr{
		{name: "employeeNumber", typ: "string"}, {name: "costCenter", typ: "string"}, {name: "organization", typ: "string"},
		{name: "division", typ: "string"}, {name: "department", typ: "string"},
		{name: "manager", typ: "complex", sub: []attr{{name: "value", typ: "string"}, {name: "displayName", typ: "string", readOnly: true}}},
	}
	groupAttrs = []attr{
		{name: "displayName", typ: "string", required: true},
		{name: "externalId", typ: "string", caseExact: true},
		{name: "members", typ: "complex", multi: true, sub: []attr{{name: "value", typ: "string", caseExact: true},
			{name: "display", typ: "string"}, {name: "type", typ: "string"}}},
	}
)
