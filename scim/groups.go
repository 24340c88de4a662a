package scim

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/google/uuid"
	filter "github.com/scim2/filter-parser/v2"
)

// checkGroup validates a Group sent with POST or PUT, or made by a PATCH,
// and normalises it.
func checkGroup(g resource) *Error {
	normalize(g)
	schemas := schemasOf(g)
	if !hasSchema(schemas, groupSchema) {
		return badRequest(invalidValue, "schemas must include %s", groupSchema)
	}
	for _, sc := range schemas {
		if !strings.EqualFold(sc, groupSchema) {
			return badRequest(invalidValue, "unknown schema %q (kdsync serves %s for groups)", clipText(sc), groupSchema)
		}
	}
	for k := range g {
		if strings.HasPrefix(strings.ToLower(k), "urn:") {
			return badRequest(invalidValue, "unknown schema extension %q", clipText(k))
		}
	}
	delete(g, "id")
	delete(g, "meta")
	if name, ok := g["displayName"].(string); !ok || strings.TrimSpace(name) == "" {
		return badRequest(invalidValue, "displayName is required, a non-empty string")
	}
	members, ok := g["members"]
	if !ok || members == nil {
		return nil
	}
	list, ok := members.([]any)
	if !ok {
		return badRequest(invalidValue, "members must be a list")
	}
	seen := map[string]bool{}
	out := list[:0:0]
	for i, m := range list {
		mm, ok := m.(map[string]any)
		v, isStr := mm["value"].(string)
		if !ok || !isStr || v == "" {
			return badRequest(invalidValue, "members[%d] needs a value, the member's id", i)
		}
		if t, _ := mm["type"].(string); t != "" && !strings.EqualFold(t, "User") {
			return badRequest(invalidValue, "members[%d]: only users can be members (type %q)", i, t)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, map[string]any{"value": v})
		}
	}
	g["members"] = out
	return nil
}

// memberIDs lists the member ids of a group resource.
func memberIDs(g resource) []string {
	var out []string
	for _, m := range asList(g["members"]) {
		if mm, ok := m.(map[string]any); ok {
			if v, ok := mm["value"].(string); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

func renderGroup(r *http.Request, id string, rec *groupRecord, rev uint64) resource {
	out := cloneRes(rec.Resource)
	out["id"] = id
	members := asList(out["members"])
	for _, m := range members {
		if mm, ok := m.(map[string]any); ok {
			if v, ok := mm["value"].(string); ok {
				mm["$ref"] = location(r, "Users", v)
				mm["type"] = "User"
			}
		}
	}
	if members == nil {
		out["members"] = []any{}
	}
	meta, _ := out["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["resourceType"] = "Group"
	meta["version"] = etag(rev)
	meta["location"] = location(r, "Groups", id)
	out["meta"] = meta
	return out
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		s.writeError(w, err)
		return
	}
	g, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if e := checkGroup(g); e != nil {
		s.writeError(w, e)
		return
	}
	id := uuid.NewString()
	now := s.now().UTC().Format(timeFormat)
	g["meta"] = map[string]any{"created": now, "lastModified": now}
	rec, rev, err := s.writeGroup(r.Context(), id, true, "", func(rec *groupRecord) *Error {
		rec.Resource = g
		return nil
	})
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Location", location(r, "Groups", id))
	s.write(w, http.StatusCreated, rev, renderGroup(r, id, rec, rev))
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var rec groupRecord
	rev, found, err := s.st.get(r.Context(), groupPrefix+id, &rec)
	switch {
	case err != nil:
		s.writeError(w, err)
		return
	case !found || rec.Deleted:
		s.writeError(w, notFound("Group", id))
		return
	}
	s.write(w, http.StatusOK, rev, project(r, renderGroup(r, id, &rec, rev)))
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	start, count, e := s.paging(q.Get("startIndex"), q.Get("count"))
	if e != nil {
		s.writeError(w, e)
		return
	}
	var f filter.Expression
	if fs := q.Get("filter"); fs != "" {
		if f, e = parseFilter(fs); e != nil {
			s.writeError(w, e)
			return
		}
	}
	type item struct {
		id  string
		rec groupRecord
		rev uint64
	}
	var items []item
	err := s.scan(r.Context(), groupPrefix, func(id string, b []byte, rev uint64) {
		var rec groupRecord
		if decodeRecord(b, &rec) && !rec.Deleted && (f == nil || match(withID(rec.Resource, id), f)) {
			items = append(items, item{id, rec, rev})
		}
	})
	if err != nil {
		s.writeError(w, err)
		return
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.id, b.id) })
	page := window(len(items), start, count)
	res := make([]any, 0, page[1]-page[0])
	for _, it := range items[page[0]:page[1]] {
		res = append(res, project(r, renderGroup(r, it.id, &it.rec, it.rev)))
	}
	s.write(w, http.StatusOK, 0, listResponse(len(items), start, res))
}

func (s *Server) replaceGroup(w http.ResponseWriter, r *http.Request) { s.editGroup(w, r, false) }

func (s *Server) patchGroup(w http.ResponseWriter, r *http.Request) { s.editGroup(w, r, true) }

// editGroup runs a PUT (patch false) or PATCH of a group.
func (s *Server) editGroup(w http.ResponseWriter, r *http.Request, patch bool) {
	id, edit, ok := s.readEdit(w, r, patch, checkGroup)
	if !ok {
		return
	}
	s.updateGroup(w, r, id, func(rec *groupRecord) *Error {
		res, e := edit(rec.Resource)
		if e == nil {
			rec.Resource = res
		}
		return e
	})
}

func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request, id string, fn func(*groupRecord) *Error) {
	rec, rev, err := s.writeGroup(r.Context(), id, false, r.Header.Get("If-Match"), func(rec *groupRecord) *Error {
		before := cloneRes(rec.Resource)
		if e := fn(rec); e != nil {
			return e
		}
		if !reflect.DeepEqual(before, rec.Resource) {
			meta, _ := rec.Resource["meta"].(map[string]any)
			meta = cloneRes(meta)
			if meta == nil {
				meta = map[string]any{}
			}
			meta["lastModified"] = s.now().UTC().Format(timeFormat)
			rec.Resource["meta"] = meta
		}
		return nil
	})
	if err != nil {
		s.writeError(w, err)
		return
	}
	// Okta and Entra ID expect 200 with the group or 204; the group it is.
	s.write(w, http.StatusOK, rev, project(r, renderGroup(r, id, rec, rev)))
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		s.writeError(w, err)
		return
	}
	_, _, err := s.writeGroup(r.Context(), r.PathValue("id"), false, r.Header.Get("If-Match"), func(rec *groupRecord) *Error {
		rec.Deleted = true
		return nil
	})
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeGroup is every write of a group: under the group's lock it reads
// the record, finishes a member update an earlier write left, applies fn,
// checks that new members exist, stores the record with the members to
// update (those added, removed, or all when the name changes), then
// updates each member's user record (its groups, and through the mapping
// its role: a changed event when it moves) and clears the list.
func (s *Server) writeGroup(ctx context.Context, id string, create bool, ifMatch string, fn func(*groupRecord) *Error) (*groupRecord, uint64, error) {
	defer s.st.lockGroup(id)()
	key := groupPrefix + id
	for range maxWriteAttempts {
		var rec groupRecord
		rev, found, err := s.st.get(ctx, key, &rec)
		if err != nil {
			return nil, 0, err
		}
		if found && len(rec.Sync) > 0 {
			if err := s.syncMembers(ctx, id, &rec); err != nil {
				return nil, 0, err
			}
		}
		if found && rec.Deleted {
			if err := s.st.remove(ctx, key, rev); err != nil && !errors.Is(err, errConflict) {
				return nil, 0, err
			}
			return nil, 0, notFound("Group", id)
		}
		switch {
		case create && found:
			return nil, 0, errf(http.StatusConflict, uniqueness, "group %s exists", id)
		case !create && !found:
			return nil, 0, notFound("Group", id)
		case ifMatch != "" && !etagMatches(ifMatch, rev):
			return nil, 0, preconditionFailed(rev)
		}
		next := groupRecord{Resource: cloneRes(rec.Resource), Deleted: rec.Deleted}
		if next.Resource == nil {
			next.Resource = resource{}
		}
		if e := fn(&next); e != nil {
			return nil, 0, e
		}
		old, now := memberIDs(rec.Resource), memberIDs(next.Resource)
		if next.Deleted {
			now = nil
		}
		if e := s.checkMembers(ctx, old, now); e != nil {
			return nil, 0, e
		}
		next.Sync = affected(old, now, str(rec.Resource, "displayName") != str(next.Resource, "displayName"))
		if found && len(rec.Sync) == 0 && len(next.Sync) == 0 && !next.Deleted && reflect.DeepEqual(next, rec) {
			return &rec, rev, nil
		}
		n, err := s.st.put(ctx, key, &next, rev)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if err := s.syncMembers(ctx, id, &next); err != nil {
			return nil, 0, err
		}
		if next.Deleted {
			if err := s.st.remove(ctx, key, n); err != nil && !errors.Is(err, errConflict) {
				s.log.Warn("scim: deleting a group record after its members", "group", id, "err", err)
			}
			return &next, 0, nil
		}
		if len(next.Sync) > 0 {
			next.Sync = nil
			if n2, err := s.st.put(ctx, key, &next, n); err == nil {
				n = n2
			} else if !errors.Is(err, errConflict) {
				s.log.Warn("scim: clearing a group's member updates", "group", id, "err", err)
			}
		}
		return &next, n, nil
	}
	return nil, 0, unavailable("scim: group "+id, errConflict)
}

// checkMembers refuses members added that are not users.
func (s *Server) checkMembers(ctx context.Context, old, now []string) *Error {
	for _, uid := range now {
		if slices.Contains(old, uid) {
			continue
		}
		var rec userRecord
		_, found, err := s.st.get(ctx, userPrefix+uid, &rec)
		if err != nil {
			return &Error{Status: http.StatusServiceUnavailable, Detail: err.Error()}
		}
		if !found || rec.Deleted {
			return badRequest(invalidValue, "member %q is not a user", clipText(uid))
		}
	}
	return nil
}

// affected lists the members whose user records a group change touches.
func affected(old, now []string, renamed bool) []string {
	var out []string
	for _, id := range old {
		if renamed || !slices.Contains(now, id) {
			out = append(out, id)
		}
	}
	for _, id := range now {
		if (renamed || !slices.Contains(old, id)) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// syncMembers brings the user records of rec.Sync in line with the group:
// each user's groups name it when it is a member, and the user is mapped
// again (publishing changed when the mapped role moves).
func (s *Server) syncMembers(ctx context.Context, gid string, rec *groupRecord) error {
	members := memberIDs(rec.Resource)
	display := str(rec.Resource, "displayName")
	for _, uid := range rec.Sync {
		in := !rec.Deleted && slices.Contains(members, uid)
		_, _, err := s.writeUser(ctx, uid, false, "", func(u *userRecord) *Error {
			u.Groups = slices.DeleteFunc(u.Groups, func(g groupRef) bool { return g.ID == gid })
			if in {
				u.Groups = append(u.Groups, groupRef{ID: gid, Display: display})
				slices.SortFunc(u.Groups, func(a, b groupRef) int { return strings.Compare(a.ID, b.ID) })
			}
			return nil
		})
		if err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}
