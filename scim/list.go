package scim

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// listUsers answers GET /Users with an optional filter and paging.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
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
	ctx := r.Context()
	type item struct {
		id  string
		rec userRecord
		rev uint64
	}
	var items []item
	if name, ok := userNameEq(f); ok {
		// The index answers the lookup IdPs make before every create.
		e, err := s.st.kv.Get(ctx, userNameKey(name))
		switch {
		case isKeyGone(err):
		case err != nil:
			s.writeError(w, kvErr("read the userName index", err))
			return
		default:
			id := string(e.Value())
			var rec userRecord
			rev, found, err := s.st.get(ctx, userPrefix+id, &rec)
			if err != nil {
				s.writeError(w, err)
				return
			}
			if found && !rec.Deleted && match(withID(rec.Resource, id), f) {
				items = append(items, item{id, rec, rev})
			}
		}
	} else {
		err := s.scan(ctx, userPrefix, func(id string, b []byte, rev uint64) {
			var rec userRecord
			if decodeRecord(b, &rec) && !rec.Deleted && (f == nil || match(withID(rec.Resource, id), f)) {
				items = append(items, item{id, rec, rev})
			}
		})
		if err != nil {
			s.writeError(w, err)
			return
		}
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.id, b.id) })
	total := len(items)
	page := window(total, start, count)
	res := make([]any, 0, page[1]-page[0])
	for _, it := range items[page[0]:page[1]] {
		res = append(res, project(r, renderUser(r, it.id, &it.rec, it.rev)))
	}
	s.write(w, http.StatusOK, 0, listResponse(total, start, res))
}

func withID(r resource, id string) resource {
	out := make(resource, len(r)+1)
	for k, v := range r {
		out[k] = v
	}
	out["id"] = id
	return out
}

// scan reads every live record under prefix.
func (s *Server) scan(ctx context.Context, prefix string, fn func(id string, value []byte, rev uint64)) error {
	wt, err := s.st.kv.WatchFiltered(ctx, []string{prefix + "*"}, jnoDeletes)
	if err != nil {
		return kvErr("list", err)
	}
	defer func() { _ = wt.Stop() }()
	for {
		select {
		case e, ok := <-wt.Updates():
			if !ok || e == nil {
				return nil
			}
			fn(strings.TrimPrefix(e.Key(), prefix), e.Value(), e.Revision())
		case <-ctx.Done():
			return unavailable("scim: list", ctx.Err())
		}
	}
}

// paging reads startIndex (from 1) and count (RFC 7644 section 3.4.2.4).
func (s *Server) paging(startS, countS string) (int, int, *Error) {
	start, count := 1, defaultPageSize
	if startS != "" {
		n, err := strconv.Atoi(startS)
		if err != nil {
			return 0, 0, badRequest(invalidValue, "startIndex %q is not a number", clipText(startS))
		}
		start = max(n, 1)
	}
	if countS != "" {
		n, err := strconv.Atoi(countS)
		if err != nil {
			return 0, 0, badRequest(invalidValue, "count %q is not a number", clipText(countS))
		}
		count = max(n, 0)
	}
	return start, min(count, s.opts.MaxResults), nil
}

// window is the [from, to) of a page of total items.
func window(total, start, count int) [2]int {
	from := min(start-1, total)
	return [2]int{from, min(from+count, total)}
}

func listResponse(total, start int, res []any) map[string]any {
	return map[string]any{"schemas": []string{listSchema}, "totalResults": total, "startIndex": start,
		"itemsPerPage": len(res), "Resources": res}
}

// project applies the attributes and excludedAttributes parameters to a
// rendered resource (top-level attributes; id, schemas and meta stay).
func project(r *http.Request, res resource) resource {
	q := r.URL.Query()
	if a := q.Get("attributes"); a != "" {
		keep := map[string]bool{"id": true, "schemas": true, "meta": true}
		for _, n := range strings.Split(a, ",") {
			n = strings.TrimSpace(n)
			if i := strings.IndexByte(n, '.'); i > 0 && !strings.HasPrefix(strings.ToLower(n), "urn:") {
				n = n[:i]
			}
			keep[strings.ToLower(n)] = true
		}
		for k := range res {
			if !keep[strings.ToLower(k)] {
				delete(res, k)
			}
		}
	}
	for _, n := range strings.Split(q.Get("excludedAttributes"), ",") {
		if n = strings.TrimSpace(n); n != "" && !strings.EqualFold(n, "id") && !strings.EqualFold(n, "schemas") {
			del(res, n)
		}
	}
	return res
}
