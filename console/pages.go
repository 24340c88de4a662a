package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kdsync/kdsync/dlq"
	"github.com/kdsync/kdsync/guard"
	"github.com/kdsync/kdsync/outcome"
	"github.com/kdsync/kdsync/provision"
	"github.com/kdsync/kdsync/usertrace"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	m.Handle("GET /static/", staticFS())
	m.HandleFunc("GET /login", s.loginForm)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("GET /login/oidc", s.oidcStart)
	m.HandleFunc("GET /login/callback", s.oidcCallback)
	m.HandleFunc("POST /logout", s.action(AuditLogout, s.logout))
	m.HandleFunc("GET /{$}", s.page(s.overviewPage))
	m.HandleFunc("GET /users", s.page(s.usersPage))
	m.HandleFunc("GET /users/{id}", s.page(s.userPage))
	m.HandleFunc("POST /users/{id}/sync", s.action(AuditSync, s.syncUser))
	m.HandleFunc("GET /dlq", s.page(s.dlqPage))
	m.HandleFunc("GET /dlq/{seq}", s.page(s.letterPage))
	m.HandleFunc("POST /dlq/{seq}/replay", s.action(AuditReplay, s.replay))
	m.HandleFunc("GET /guard", s.page(s.guardPage))
	m.HandleFunc("POST /guard/release", s.action(AuditRelease, s.decide(guard.Release)))
	m.HandleFunc("POST /guard/reject", s.action(AuditReject, s.decide(guard.Reject)))
	m.HandleFunc("GET /audit", s.page(s.auditPage))
	m.HandleFunc("GET /api/session", s.page(s.apiSession))
	m.HandleFunc("GET /api/users/{id}", s.page(s.apiUser))
	s.mux = m
}

// pageNames are the templates, each rendered inside layout.html.
var pageNames = []string{"login.html", "overview.html", "users.html", "user.html", "dlq.html", "letter.html",
	"guard.html", "audit.html", "confirm.html", "result.html", "error.html", "continue.html"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"rate": func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) },
		"num":  func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) },
		"join": strings.Join,
		"ms": func(p *float64) string {
			if p == nil {
				return "-"
			}
			return strconv.FormatFloat(*p, 'f', 0, 64) + " ms"
		},
		"json": func(v any) string {
			b, _ := json.MarshalIndent(v, "", "  ")
			return string(b)
		},
		"body": func(b []byte) string {
			var out bytes.Buffer
			if json.Indent(&out, b, "", "  ") != nil {
				return string(b)
			}
			return out.String()
		},
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// view is what every page gets.
type view struct {
	Title    string
	Who      string
	CSRF     string
	ReadOnly bool
	SignedIn bool
	Data     any
}

func (s *Server) render(w http.ResponseWriter, _ *http.Request, status int, name string, p *principal, title string, data any) {
	v := view{Title: title, ReadOnly: s.opts.ReadOnly, Data: data}
	if p != nil {
		v.Who, v.CSRF, v.SignedIn = p.who, p.csrf, true
	}
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		s.log.Error("rendering a console page failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorData struct{ Message string }

func (s *Server) fail(w http.ResponseWriter, r *http.Request, p *principal, status int, msg string) {
	s.render(w, r, status, "error.html", p, "Error", errorData{Message: msg})
}

// --- sign-in ---

type loginData struct {
	Next, CSRF, Error string
	// OIDC names the provider when its sign-in is on.
	OIDC string
}

func (s *Server) loginData(next, csrf, errMsg string) loginData {
	d := loginData{Next: next, CSRF: csrf, Error: errMsg}
	if s.oidc != nil {
		d.OIDC = s.oidc.cfg.Name
		if d.OIDC == "" {
			d.OIDC = "single sign-on"
		}
	}
	return d
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", MaxAge: 600,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	s.render(w, r, http.StatusOK, "login.html", nil, "Sign in", s.loginData(safeNext(r.URL.Query().Get("next")), tok, ""))
}

// safeNext keeps a redirect target on this site.
func safeNext(n string) string {
	if !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.HasPrefix(n, "/\\") || strings.ContainsAny(n, "\r\n") {
		return "/"
	}
	return n
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !equal(r.PostForm.Get("csrf"), c.Value) {
		s.record(r, nil, Entry{Action: AuditRefused, Target: "login", Result: "CSRF token missing or wrong"})
		s.fail(w, r, nil, http.StatusForbidden, "Refused: the sign-in form expired or came from elsewhere. Open the sign-in page again.")
		return
	}
	name := clip(strings.TrimSpace(r.PostForm.Get("name")), 64)
	who := "operator"
	if name != "" {
		who = name
	}
	next := safeNext(r.PostForm.Get("next"))
	if s.guessing() {
		// Too many wrong tokens lately: no more guesses for now.
		s.record(r, nil, Entry{Who: who, Action: AuditLoginFailed, Result: "too many wrong tokens; refused unchecked"})
		w.Header().Set("Retry-After", "2")
		s.fail(w, r, nil, http.StatusTooManyRequests, "Too many wrong tokens lately. Wait a few seconds and try again.")
		return
	}
	if !s.tokenOK(r.PostForm.Get("token")) {
		s.failed()
		s.record(r, nil, Entry{Who: who, Action: AuditLoginFailed, Result: "wrong token"})
		tok := randomToken()
		http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", MaxAge: 600,
			Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		s.render(w, r, http.StatusUnauthorized, "login.html", nil, "Sign in", s.loginData(next, tok, "That token is not right."))
		return
	}
	s.signIn(w, r, who)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signIn starts a session for who: a fresh id in the session cookie.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, who string) {
	ss := s.sessions.start(who)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: ss.id, Path: "/", MaxAge: int(s.opts.SessionTTL.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	s.record(r, &principal{who: who}, Entry{Action: AuditLogin, Result: "ok"})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, p *principal) {
	if p.sid != "" {
		s.sessions.end(p.sid)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	s.record(r, p, Entry{Action: AuditLogout, Result: "ok"})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// --- pages ---

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request, p *principal) {
	var o overview
	if g := s.opts.Gatherer; g != nil {
		if fams, err := g.Gather(); err == nil {
			o.fromMetrics(fams)
			o.Rates, o.RateOver = s.rates.per(s.opts.Now(), o.Finished)
		}
	}
	s.fromStores(r.Context(), &o)
	s.render(w, r, http.StatusOK, "overview.html", p, "Overview", o)
}

type usersData struct {
	Query, Error string
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, p *principal) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		s.render(w, r, http.StatusOK, "users.html", p, "Users", usersData{})
		return
	}
	if err := usertrace.CheckUser(q); err != nil {
		s.render(w, r, http.StatusBadRequest, "users.html", p, "Users", usersData{Query: q, Error: "Not a user id: digits (or letters, - and _), no dots, spaces or wildcards."})
		return
	}
	http.Redirect(w, r, "/users/"+q, http.StatusSeeOther)
}

type userData struct {
	T       *usertrace.Timeline
	KooRead bool
	CanSync bool
}

func (s *Server) userPage(w http.ResponseWriter, r *http.Request, p *principal) {
	id := r.PathValue("id")
	tl, err := s.tracer.Trace(r.Context(), id)
	if errors.Is(err, usertrace.ErrBadUser) {
		s.fail(w, r, p, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, p, http.StatusInternalServerError, "Reading the user's story failed: "+err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "user.html", p, "User "+id, userData{T: tl, CanSync: s.opts.KooDrive != nil && !s.opts.ReadOnly})
}

// confirmData is the confirmation step of an action.
type confirmData struct {
	Action   string // what the button says
	Question string
	Details  []string
	Post     string // where the form goes
	Fields   map[string]string
	Back     string
}

// confirmed reports whether the request is the confirmed second step.
func confirmed(r *http.Request) bool { return r.PostForm.Get("confirm") == "yes" }

type resultData struct {
	Title  string
	OK     bool
	Lines  []string
	Steps  []provision.Step
	Back   string
	BackTo string
}

func (s *Server) syncUser(w http.ResponseWriter, r *http.Request, p *principal) {
	id := r.PathValue("id")
	if err := usertrace.CheckUser(id); err != nil {
		s.fail(w, r, p, http.StatusBadRequest, err.Error())
		return
	}
	if s.opts.KooDrive == nil {
		s.fail(w, r, p, http.StatusConflict, "Sync needs KooDrive, which this console cannot reach.")
		return
	}
	o := s.syncOptions()
	if !confirmed(r) {
		o.DryRun = true
		res, err := provision.Sync(r.Context(), o, id)
		if res == nil {
			s.fail(w, r, p, http.StatusInternalServerError, err.Error())
			return
		}
		d := confirmData{Action: "Sync " + id + " now", Question: "Sync user " + id + " now?", Post: "/users/" + id + "/sync", Back: "/users/" + id}
		for _, st := range res.Steps {
			d.Details = append(d.Details, st.Name+": "+st.Detail)
		}
		switch {
		case err != nil:
			s.render(w, r, http.StatusOK, "result.html", p, "Sync", resultData{Title: "Nothing to sync", Lines: []string{err.Error()}, Steps: res.Steps, Back: "/users/" + id, BackTo: "the user"})
			return
		case res.InSync:
			s.render(w, r, http.StatusOK, "result.html", p, "Sync", resultData{Title: "Already in sync", OK: true, Steps: res.Steps, Back: "/users/" + id, BackTo: "the user"})
			return
		}
		d.Details = append(d.Details, "The repair is published into the identity stream; kdsync applies it in the user's order.")
		s.render(w, r, http.StatusOK, "confirm.html", p, "Confirm sync", d)
		return
	}
	res, err := provision.Sync(r.Context(), o, id)
	e := Entry{Action: AuditSync, Target: "user " + id, Result: "ok"}
	rd := resultData{Title: "Synced: KooDrive matches", OK: true, Back: "/users/" + id, BackTo: "the user"}
	if res != nil {
		rd.Steps = res.Steps
		if res.Repair != nil && res.Repair.Published() {
			e.Detail = fmt.Sprintf("published %s #%d (%s)", res.Repair.Subject, res.Repair.Sequence, res.Repair.EventID)
		}
	}
	if err != nil {
		e.Result = err.Error()
		rd.Title, rd.OK = "Sync failed", false
		rd.Lines = []string{err.Error()}
	}
	s.record(r, p, e)
	s.render(w, r, http.StatusOK, "result.html", p, "Sync", rd)
}

type dlqData struct {
	Letters []*dlq.Letter
	Error   string
}

func (s *Server) dlqPage(w http.ResponseWriter, r *http.Request, p *principal) {
	ls, err := s.dlq.List(r.Context(), dlq.Selector{User: strings.TrimSpace(r.URL.Query().Get("user"))})
	d := dlqData{Letters: ls}
	if err != nil {
		d.Error = err.Error()
	}
	const limit = 500
	if len(d.Letters) > limit {
		d.Letters = d.Letters[len(d.Letters)-limit:]
	}
	s.render(w, r, http.StatusOK, "dlq.html", p, "Dead letters", d)
}

type letterData struct {
	L       *dlq.Letter
	Outcome *outcome.Outcome
	Ref     string
}

func (s *Server) letter(w http.ResponseWriter, r *http.Request, p *principal) (*dlq.Letter, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		s.fail(w, r, p, http.StatusBadRequest, "Not a dead letter's sequence.")
		return nil, false
	}
	ls, err := s.dlq.List(r.Context(), dlq.Selector{Seqs: []uint64{seq}})
	if err != nil {
		s.fail(w, r, p, http.StatusInternalServerError, err.Error())
		return nil, false
	}
	if len(ls) == 0 {
		s.fail(w, r, p, http.StatusNotFound, fmt.Sprintf("No dead letter #%d (replayed or purged?).", seq))
		return nil, false
	}
	return ls[0], true
}

func (s *Server) letterPage(w http.ResponseWriter, r *http.Request, p *principal) {
	l, ok := s.letter(w, r, p)
	if !ok {
		return
	}
	out, _ := s.dlq.Outcome(r.Context(), l)
	s.render(w, r, http.StatusOK, "letter.html", p, fmt.Sprintf("Dead letter #%d", l.Seq), letterData{L: l, Outcome: out, Ref: s.dlq.Ref(l)})
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, p *principal) {
	l, ok := s.letter(w, r, p)
	if !ok {
		return
	}
	force := r.PostForm.Get("force") == "on" || r.PostForm.Get("force") == "true"
	back := fmt.Sprintf("/dlq/%d", l.Seq)
	if !confirmed(r) {
		d := confirmData{Action: fmt.Sprintf("Replay dead letter #%d", l.Seq), Question: fmt.Sprintf("Replay dead letter #%d?", l.Seq),
			Post: back + "/replay", Back: back, Fields: map[string]string{}}
		d.Details = []string{
			fmt.Sprintf("The original event (%s of user %s, id %s) goes back to %s and through kdsync like any event.", l.Action, l.UserID, l.EventID, l.OriginalSubject),
			"It died of: " + l.Reason + ": " + l.Error,
		}
		if force {
			d.Fields["force"] = "on"
			d.Details = append(d.Details, "Forced: applied even if newer state was applied since for this user.")
		}
		s.render(w, r, http.StatusOK, "confirm.html", p, "Confirm replay", d)
		return
	}
	rs := s.dlq.Replay(r.Context(), []*dlq.Letter{l}, dlq.ReplayOptions{Force: force, Wait: s.opts.ReplayWait})
	res := rs[0]
	e := Entry{Action: AuditReplay, Target: fmt.Sprintf("dead letter #%d (user %s, event %s)", l.Seq, l.UserID, l.EventID), Result: "ok"}
	rd := resultData{OK: true, Back: "/dlq", BackTo: "dead letters"}
	switch {
	case res.Err != nil:
		e.Result, rd.OK = res.Err.Error(), false
		rd.Title = "Replay failed"
		rd.Lines = []string{res.Err.Error()}
	default:
		rd.Title = fmt.Sprintf("Replayed as %s #%d", res.Stream, res.Seq)
		e.Detail = fmt.Sprintf("to %s #%d", res.Stream, res.Seq)
		if res.Outcome != nil {
			line := fmt.Sprintf("Outcome: %s %s %s", res.Outcome.Result, res.Outcome.Reason, res.Outcome.Note)
			rd.Lines = append(rd.Lines, line)
			e.Detail += "; outcome " + string(res.Outcome.Result) + " " + string(res.Outcome.Reason)
			if res.Outcome.Result != outcome.Applied {
				rd.OK = false
			}
		} else {
			rd.Lines = append(rd.Lines, "No outcome yet; see the user's timeline.")
		}
		if res.Removed {
			rd.Lines = append(rd.Lines, "The dead letter was removed from the DLQ.")
		} else {
			rd.Lines = append(rd.Lines, "The dead letter stays in the DLQ.")
		}
	}
	s.record(r, p, e)
	s.render(w, r, http.StatusOK, "result.html", p, "Replay", rd)
}

type guardData struct {
	Off     bool
	Error   string
	Holds   []guard.Hold
	Pending int
}

func (s *Server) guardPage(w http.ResponseWriter, r *http.Request, p *principal) {
	d := guardData{}
	g, err := s.guard(r.Context())
	switch {
	case errors.Is(err, errGuardOff):
		d.Off = true
	case err != nil:
		d.Error = err.Error()
	default:
		d.Holds, err = g.Held(r.Context())
		if err != nil {
			d.Error = err.Error()
		}
		for _, h := range d.Holds {
			if h.Decision == guard.Pending {
				d.Pending++
			}
		}
	}
	s.render(w, r, http.StatusOK, "guard.html", p, "Guard", d)
}

func (s *Server) decide(dec guard.Decision) handler {
	verb := map[guard.Decision]string{guard.Release: "Release", guard.Reject: "Reject"}[dec]
	done := map[guard.Decision]string{guard.Release: "Released", guard.Reject: "Rejected"}[dec]
	return func(w http.ResponseWriter, r *http.Request, p *principal) {
		seq, err := strconv.ParseUint(r.PostForm.Get("seq"), 10, 64)
		if err != nil || seq == 0 {
			s.fail(w, r, p, http.StatusBadRequest, "Which held event? (seq)")
			return
		}
		g, err := s.guard(r.Context())
		if err != nil {
			s.fail(w, r, p, http.StatusConflict, err.Error())
			return
		}
		held, err := g.Held(r.Context())
		if err != nil {
			s.fail(w, r, p, http.StatusInternalServerError, err.Error())
			return
		}
		var h *guard.Hold
		for i := range held {
			if held[i].Seq == seq {
				h = &held[i]
			}
		}
		if h == nil || h.Decision != guard.Pending {
			s.fail(w, r, p, http.StatusConflict, fmt.Sprintf("Event #%d is not held pending a decision (decided or finished already?).", seq))
			return
		}
		if !confirmed(r) {
			d := confirmData{Action: fmt.Sprintf("%s #%d", verb, seq), Question: fmt.Sprintf("%s held event #%d?", verb, seq),
				Post: "/guard/" + string(dec), Back: "/guard", Fields: map[string]string{"seq": strconv.FormatUint(seq, 10)}}
			d.Details = []string{fmt.Sprintf("%s of user %s (event %s), held since %s.", h.Action, h.UserID, h.EventID, h.Since.UTC().Format(time.RFC3339))}
			if dec == guard.Release {
				d.Details = append(d.Details, "Released, kdsync applies it: the user loses access in KooDrive. The guard's window starts again.")
			} else {
				d.Details = append(d.Details, "Rejected, kdsync does not apply it: it gets a skipped outcome (guard_rejected).")
			}
			s.render(w, r, http.StatusOK, "confirm.html", p, "Confirm "+strings.ToLower(verb), d)
			return
		}
		decided, err := g.Decide(r.Context(), []uint64{seq}, dec, p.who+" (console)")
		e := Entry{Action: string(dec), Target: fmt.Sprintf("held event #%d (%s of user %s)", seq, h.Action, h.UserID), Result: "ok"}
		rd := resultData{OK: true, Title: fmt.Sprintf("%s #%d", done, seq), Back: "/guard", BackTo: "the guard",
			Lines: []string{"kdsync picks the decision up within a few seconds; the outcome shows on the user's timeline."}}
		switch {
		case err != nil:
			e.Result, rd.OK, rd.Title, rd.Lines = err.Error(), false, verb+" failed", []string{err.Error()}
		case len(decided) == 0:
			e.Result, rd.OK, rd.Title, rd.Lines = "not pending any more", false, "Nothing decided", []string{"Someone decided it meanwhile."}
		}
		s.record(r, p, e)
		s.render(w, r, http.StatusOK, "result.html", p, verb, rd)
	}
}

type auditData struct {
	Entries []Entry
	Error   string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, p *principal) {
	es, err := s.audit.last(r.Context(), 200)
	d := auditData{Entries: es}
	if err != nil {
		d.Error = err.Error()
	}
	s.render(w, r, http.StatusOK, "audit.html", p, "Audit log", d)
}

// --- JSON for scripts ---

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) apiSession(w http.ResponseWriter, _ *http.Request, p *principal) {
	writeJSON(w, http.StatusOK, map[string]any{"who": p.who, "csrf": p.csrf, "readOnly": s.opts.ReadOnly})
}

func (s *Server) apiUser(w http.ResponseWriter, r *http.Request, _ *principal) {
	tl, err := s.tracer.Trace(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, usertrace.ErrBadUser):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, tl)
	}
}
