package scim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/mapping"
)

func newEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

func decodeRecord(b []byte, v any) bool { return json.Unmarshal(b, v) == nil }

// checkUser validates a User sent with POST or PUT, or made by a PATCH,
// and normalises it: known attributes under their canonical names,
// booleans sent as text read as booleans, read-only and write-only
// attributes (id, meta, groups, password) dropped.
func checkUser(u resource) *Error {
	normalize(u)
	schemas := schemasOf(u)
	if !hasSchema(schemas, userSchema) {
		return badRequest(invalidValue, "schemas must include %s", userSchema)
	}
	for _, sc := range schemas {
		if !strings.EqualFold(sc, userSchema) && !strings.EqualFold(sc, enterpriseSchema) {
			return badRequest(invalidValue, "unknown schema %q (kdsync serves %s and %s)", clipText(sc), userSchema, enterpriseSchema)
		}
	}
	for k, v := range u {
		if strings.HasPrefix(strings.ToLower(k), "urn:") {
			if !strings.EqualFold(k, enterpriseSchema) {
				return badRequest(invalidValue, "unknown schema extension %q", clipText(k))
			}
			if _, ok := v.(map[string]any); !ok {
				return badRequest(invalidValue, "%s must be an object", enterpriseSchema)
			}
			if !hasSchema(schemas, enterpriseSchema) {
				set(u, "schemas", append(asList(u["schemas"]), enterpriseSchema))
			}
		}
	}
	for _, a := range []string{"id", "meta", "groups", "password"} {
		delete(u, a)
	}
	name, ok := u["userName"].(string)
	if !ok || strings.TrimSpace(name) == "" {
		return badRequest(invalidValue, "userName is required, a non-empty string")
	}
	if v, ok := u["active"]; ok && v != nil {
		if _, isBool := v.(bool); !isBool {
			return badRequest(invalidValue, "active must be a boolean, got %s", kindOf(v))
		}
	}
	if v, ok := u["externalId"]; ok && v != nil {
		if _, isStr := v.(string); !isStr {
			return badRequest(invalidValue, "externalId must be a string, got %s", kindOf(v))
		}
	}
	if v, ok := u["name"]; ok && v != nil {
		if _, isMap := v.(map[string]any); !isMap {
			return badRequest(invalidValue, "name must be an object, got %s", kindOf(v))
		}
	}
	for k, v := range u {
		if isMultiValued(k) && v != nil {
			if _, isList := v.([]any); !isList {
				return badRequest(invalidValue, "%s must be a list, got %s", k, kindOf(v))
			}
		}
	}
	return nil
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return "a value"
}

// renderUser is the User as answered: the stored resource with its id,
// groups and meta.
func renderUser(r *http.Request, id string, rec *userRecord, rev uint64) resource {
	out := cloneRes(rec.Resource)
	out["id"] = id
	if len(rec.Groups) > 0 {
		gs := make([]any, len(rec.Groups))
		for i, g := range rec.Groups {
			gs[i] = map[string]any{"value": g.ID, "display": g.Display, "$ref": location(r, "Groups", g.ID), "type": "direct"}
		}
		out["groups"] = gs
	}
	meta, _ := out["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["resourceType"] = "User"
	meta["version"] = etag(rev)
	meta["location"] = location(r, "Users", id)
	out["meta"] = meta
	return out
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		s.writeError(w, err)
		return
	}
	u, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if e := checkUser(u); e != nil {
		s.writeError(w, e)
		return
	}
	ctx := r.Context()
	id := uuid.NewString()
	userName := u["userName"].(string)
	if err := s.claimUserName(ctx, userName, id); err != nil {
		s.writeError(w, err)
		return
	}
	now := s.now().UTC().Format(timeFormat)
	u["meta"] = map[string]any{"created": now, "lastModified": now}
	rec, rev, err := s.writeUser(ctx, id, true, "", func(rec *userRecord) *Error {
		rec.Resource = u
		return nil
	})
	if err != nil {
		s.releaseUserName(context.WithoutCancel(ctx), userName, id)
		s.writeError(w, err)
		return
	}
	w.Header().Set("Location", location(r, "Users", id))
	s.write(w, http.StatusCreated, rev, renderUser(r, id, rec, rev))
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var rec userRecord
	rev, found, err := s.st.get(r.Context(), userPrefix+id, &rec)
	switch {
	case err != nil:
		s.writeError(w, err)
		return
	case !found || rec.Deleted:
		s.writeError(w, notFound("User", id))
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, rev) {
		w.Header().Set("ETag", etag(rev))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.write(w, http.StatusOK, rev, project(r, renderUser(r, id, &rec, rev)))
}

func (s *Server) replaceUser(w http.ResponseWriter, r *http.Request) { s.editUser(w, r, false) }

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) { s.editUser(w, r, true) }

// editUser runs a PUT (patch false) or PATCH of a user.
func (s *Server) editUser(w http.ResponseWriter, r *http.Request, patch bool) {
	id, edit, ok := s.readEdit(w, r, patch, checkUser)
	if !ok {
		return
	}
	s.updateUser(w, r, id, func(rec *userRecord) *Error {
		res, e := edit(rec.Resource)
		if e == nil {
			rec.Resource = res
		}
		return e
	})
}

// updateUser runs a PUT or PATCH: fn changes the record; a userName that
// changes is claimed first and its old index entry released after.
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, id string, fn func(*userRecord) *Error) {
	ctx := r.Context()
	var oldName, newName string
	rec, rev, err := s.writeUser(ctx, id, false, r.Header.Get("If-Match"), func(rec *userRecord) *Error {
		oldName = str(rec.Resource, "userName")
		before := cloneRes(rec.Resource)
		if e := fn(rec); e != nil {
			return e
		}
		newName = str(rec.Resource, "userName")
		if !strings.EqualFold(oldName, newName) {
			if err := s.claimUserName(ctx, newName, id); err != nil {
				var se *Error
				if errors.As(err, &se) {
					return se
				}
				return &Error{Status: http.StatusServiceUnavailable, Detail: err.Error()}
			}
		}
		if !reflect.DeepEqual(before, rec.Resource) {
			meta, _ := rec.Resource["meta"].(map[string]any)
			if meta == nil {
				meta = map[string]any{}
			}
			meta = cloneRes(meta)
			meta["lastModified"] = s.now().UTC().Format(timeFormat)
			rec.Resource["meta"] = meta
		}
		return nil
	})
	if err != nil {
		if newName != "" && !strings.EqualFold(oldName, newName) {
			s.releaseUserName(context.WithoutCancel(ctx), newName, id)
		}
		s.writeError(w, err)
		return
	}
	if !strings.EqualFold(oldName, newName) {
		s.releaseUserName(ctx, oldName, id)
	}
	s.write(w, http.StatusOK, rev, renderUser(r, id, rec, rev))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		s.writeError(w, err)
		return
	}
	ctx := r.Context()
	id := r.PathValue("id")
	var groups []groupRef
	var userName string
	_, _, err := s.writeUser(ctx, id, false, r.Header.Get("If-Match"), func(rec *userRecord) *Error {
		groups, userName = rec.Groups, str(rec.Resource, "userName")
		rec.Deleted = true
		return nil
	})
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.releaseUserName(ctx, userName, id)
	for _, g := range groups {
		_, _, err := s.writeGroup(ctx, g.ID, false, "", func(gr *groupRecord) *Error {
			set(gr.Resource, "members", removeValues(asList(gr.Resource["members"]), []any{map[string]any{"value": id}}))
			return nil
		})
		if err != nil && !isNotFound(err) {
			s.log.Warn("scim: removing a deleted user from a group", "user", id, "group", g.ID, "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeUser is every write of a user: under the user's lock, it reads the
// record, publishes what an earlier write left pending, applies fn, maps
// the result and plans its events, stores the record with the events
// (compare and set on the revision read), publishes them, waits for the
// PubAcks and clears them. create makes a new record; ifMatch, when set,
// must name the current revision.
func (s *Server) writeUser(ctx context.Context, id string, create bool, ifMatch string, fn func(*userRecord) *Error) (*userRecord, uint64, error) {
	defer s.st.lockUser(id)()
	key := userPrefix + id
	for range maxWriteAttempts {
		var rec userRecord
		rev, found, err := s.st.get(ctx, key, &rec)
		if err != nil {
			return nil, 0, err
		}
		if found && len(rec.Pending) > 0 {
			if err := s.st.publish(ctx, rec.Pending, s.log); err != nil {
				return nil, 0, err
			}
		}
		if found && rec.Deleted {
			// A deletion whose events are out: finish it.
			if err := s.st.remove(ctx, key, rev); err != nil && !errors.Is(err, errConflict) {
				return nil, 0, err
			}
			return nil, 0, notFound("User", id)
		}
		switch {
		case create && found:
			return nil, 0, errf(http.StatusConflict, uniqueness, "user %s exists", id)
		case !create && !found:
			return nil, 0, notFound("User", id)
		case ifMatch != "" && !etagMatches(ifMatch, rev):
			return nil, 0, preconditionFailed(rev)
		}
		next := userRecord{Resource: cloneRes(rec.Resource), Groups: slices.Clone(rec.Groups), Mapped: rec.Mapped, MappingError: rec.MappingError}
		if e := fn(&next); e != nil {
			return nil, 0, e
		}
		s.remap(&next, &rec, id, rev)
		if found && len(rec.Pending) == 0 && len(next.Pending) == 0 && !next.Deleted && reflect.DeepEqual(next, rec) {
			return &rec, rev, nil // nothing changes
		}
		n, err := s.st.put(ctx, key, &next, rev)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if err := s.st.publish(ctx, next.Pending, s.log); err != nil {
			return nil, 0, err
		}
		if next.Deleted {
			if err := s.st.remove(ctx, key, n); err != nil && !errors.Is(err, errConflict) {
				s.log.Warn("scim: deleting a user record after its events", "user", id, "err", err)
			}
			return &next, 0, nil
		}
		if len(next.Pending) > 0 {
			next.Pending = nil
			n2, err := s.st.put(ctx, key, &next, n)
			switch {
			case err == nil:
				n = n2
			case errors.Is(err, errConflict):
				// Another instance wrote since; it published these too.
			default:
				// Published but not cleared: the next access publishes
				// them again under the same Nats-Msg-Id (a duplicate the
				// stream and the consumer drop).
				s.log.Warn("scim: clearing published events", "user", id, "err", err)
			}
		}
		return &next, n, nil
	}
	return nil, 0, unavailable("scim: user "+id, errConflict)
}

// remap maps next's resource and plans the messages of the write over
// prev (at revision base): the events that move KooDrive, or for a
// mapping failure a dead letter (once per distinct failure).
func (s *Server) remap(next, prev *userRecord, id string, base uint64) {
	next.Pending = nil
	var changes []change
	if next.Deleted {
		next.Mapped, changes = plan(prev.Mapped, mapping.Result{}, true, false, "")
		next.MappingError = ""
		next.Pending = s.messages(id, base, changes)
		return
	}
	groups := make([]string, len(next.Groups))
	for i, g := range next.Groups {
		groups[i] = g.Display
	}
	res, err := s.opts.Mapping.Map(mapping.Record{User: next.Resource, Groups: groups})
	if err != nil {
		msg := err.Error()
		if msg != prev.MappingError {
			action := handlers.Changed
			if !prev.Mapped.Exists {
				action = handlers.Hired
			}
			userID := prev.Mapped.UserID
			s.log.Warn("scim: a user cannot be mapped; it is dead-lettered", "resource", id, "err", err)
			next.Pending = s.deadLetter(id, base, action, userID, next.Resource, err)
		}
		next.MappingError = msg
		return
	}
	next.MappingError = ""
	name, _ := next.Resource["displayName"].(string)
	next.Mapped, changes = plan(prev.Mapped, res, false, s.opts.Mapping.SkipOutOfScopeDeletions, name)
	next.Pending = s.messages(id, base, changes)
}

// claimUserName records userName as id's in the index, or answers 409
// when another live user has it. An entry whose user is gone or renamed
// (a crash between the index and the record) is taken over.
func (s *Server) claimUserName(ctx context.Context, userName, id string) error {
	key := userNameKey(userName)
	for range maxWriteAttempts {
		_, err := s.st.kv.Create(ctx, key, []byte(id))
		if err == nil {
			return nil
		}
		if !errors.Is(err, errKeyExists) {
			return kvErr("claim userName", err)
		}
		e, err := s.st.kv.Get(ctx, key)
		if err != nil {
			if isKeyGone(err) {
				continue
			}
			return kvErr("read the userName index", err)
		}
		other := string(e.Value())
		if other == id {
			return nil
		}
		var orec userRecord
		_, found, err := s.st.get(ctx, userPrefix+other, &orec)
		if err != nil {
			return err
		}
		if found && !orec.Deleted && strings.EqualFold(str(orec.Resource, "userName"), userName) {
			return errf(http.StatusConflict, uniqueness, "userName %q is taken by user %s", clipText(userName), other)
		}
		if _, err := s.st.kv.Update(ctx, key, []byte(id), e.Revision()); err == nil {
			return nil
		} else if !errors.Is(err, errRevisionMismatch) && !errors.Is(err, errKeyExists) {
			return kvErr("claim userName", err)
		}
	}
	return unavailable("scim: claim userName", errConflict)
}

// releaseUserName removes userName's index entry when it names id.
func (s *Server) releaseUserName(ctx context.Context, userName, id string) {
	if userName == "" {
		return
	}
	key := userNameKey(userName)
	e, err := s.st.kv.Get(ctx, key)
	if err != nil || string(e.Value()) != id {
		return
	}
	if err := s.st.remove(ctx, key, e.Revision()); err != nil && !errors.Is(err, errConflict) {
		s.log.Warn("scim: releasing a userName", "err", err)
	}
}
