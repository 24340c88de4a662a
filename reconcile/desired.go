package reconcile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/outcome"
)

// Desired is what one user should look like in KooDrive. Nil fields are
// not managed: they are never compared and never repaired.
type Desired struct {
	UserID string `json:"userId"`
	DeptID *int64 `json:"deptId,omitempty,string"`
	Role   *int   `json:"role,omitempty"`
	Status *int   `json:"status,omitempty"`
	// Absent: the user must have no access: absent from KooDrive or
	// disabled there both satisfy it (a user kdsync hard-deleted).
	Absent bool `json:"absent,omitempty"`
	// Seq is the stream sequence of the last event kdsync finished for the
	// user, when the desired state comes from kdsync's records; 0 from a
	// source file.
	Seq uint64 `json:"seq,omitempty"`
	// Line is the source line the user was read from; 0 from records.
	Line int `json:"line,omitempty"`
}

// disabledOrAbsent reports whether d is satisfied by a user absent from
// KooDrive.
func (d *Desired) disabledOrAbsent() bool {
	return d.Absent || d.Status != nil && *d.Status == kdapi.StatusDisabled
}

// Format is the format of a source.
type Format int

// Source formats. FormatAuto looks at the first character: '{' is JSON
// Lines, anything else CSV.
const (
	FormatAuto Format = iota
	FormatCSV
	FormatJSONL
)

// ParseFormat reads a format name: auto, csv, jsonl (or ndjson).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return FormatAuto, nil
	case "csv":
		return FormatCSV, nil
	case "jsonl", "ndjson", "json":
		return FormatJSONL, nil
	}
	return FormatAuto, fmt.Errorf("format %q: want auto, csv or jsonl", s)
}

// FormatOf guesses a file's format from its name: .csv is CSV; .jsonl,
// .ndjson and .json are JSON Lines; anything else (and "-") is FormatAuto.
func FormatOf(name string) Format {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return FormatCSV
	case ".jsonl", ".ndjson", ".json":
		return FormatJSONL
	}
	return FormatAuto
}

// LineError is a bad row of a source.
type LineError struct {
	Line  int
	Field string // empty when the row as a whole is bad
	Msg   string
}

// Error reads like "line 7: role: 9 is not a role (0, 1, 2, 3, 5)".
func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
}

// maxLineErrors bounds the errors ReadSource reports; the rest are counted.
const maxLineErrors = 20

// maxRowSize bounds one JSON line.
const maxRowSize = 1 << 20

// ReadSource reads desired users, one per row: CSV with a header naming
// the columns userId (required), deptId, role and status (any order, any
// case; other columns are ignored), or JSON Lines of objects with those
// members (deptId a string or a number; unknown members ignored). An empty
// cell, a missing member or null leaves the field unmanaged. Status is 0
// or 1 (or "enabled", "disabled"). Blank lines are skipped.
//
// Any bad row fails the whole read: the error joins a *LineError per bad
// row (the first 20) with its line number, so that a damaged export is
// never half-applied. A user listed twice is a bad row.
func ReadSource(r io.Reader, f Format) ([]Desired, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	// Excel and friends start a UTF-8 CSV with a byte order mark.
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3)
	}
	if f == FormatAuto {
		f = sniff(br)
	}
	var rows []Desired
	var errs lineErrors
	switch f {
	case FormatJSONL:
		rows = readJSONL(br, &errs)
	default:
		rows = readCSV(br, &errs)
	}
	seen := make(map[string]int, len(rows))
	for _, d := range rows {
		if first, ok := seen[d.UserID]; ok {
			errs.add(&LineError{Line: d.Line, Field: "userId", Msg: fmt.Sprintf("%s is listed twice (first on line %d)", d.UserID, first)})
			continue
		}
		seen[d.UserID] = d.Line
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// sniff returns JSON Lines when the first non-blank byte is '{'.
func sniff(br *bufio.Reader) Format {
	b, _ := br.Peek(4096) // fewer at the end of the input
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return FormatJSONL
		}
		return FormatCSV
	}
	return FormatCSV
}

type lineErrors struct {
	list []error
	more int
	io   error // a read error ends the read
}

func (l *lineErrors) add(e *LineError) {
	if len(l.list) < maxLineErrors {
		l.list = append(l.list, e)
		return
	}
	l.more++
}

func (l *lineErrors) err() error {
	if l.io != nil {
		return fmt.Errorf("reconcile: read source: %w", l.io)
	}
	if len(l.list) == 0 {
		return nil
	}
	errs := l.list
	if l.more > 0 {
		errs = append(errs, fmt.Errorf("and %d more bad rows", l.more))
	}
	return fmt.Errorf("reconcile: the source has bad rows; nothing was compared:\n%w", errors.Join(errs...))
}

// Column names, compared without case.
const (
	colUserID = "userid"
	colDeptID = "deptid"
	colRole   = "role"
	colStatus = "status"
)

func readCSV(r io.Reader, errs *lineErrors) []Desired {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		errs.add(csvError(err, 1))
		return nil
	}
	col := map[string]int{}
	for i, h := range head {
		name := strings.ToLower(strings.TrimSpace(h))
		if _, dup := col[name]; dup && name != "" {
			errs.add(&LineError{Line: 1, Field: h, Msg: "column given twice"})
		}
		col[name] = i
	}
	if _, ok := col[colUserID]; !ok {
		errs.add(&LineError{Line: 1, Msg: fmt.Sprintf("the header must name a userId column (got %s)", strings.Join(head, ","))})
		return nil
	}
	cell := func(rec []string, name string) (string, bool) {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return "", false
		}
		s := strings.TrimSpace(rec[i])
		return s, s != ""
	}
	var out []Desired
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				errs.add(csvError(err, 0))
				continue
			}
			errs.io = err
			return out
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		d := Desired{Line: line}
		bad := false
		fail := func(field, msg string) {
			errs.add(&LineError{Line: line, Field: field, Msg: msg})
			bad = true
		}
		uid, _ := cell(rec, colUserID)
		if msg := checkUserID(uid); msg != "" {
			fail("userId", msg)
		}
		d.UserID = uid
		if s, ok := cell(rec, colDeptID); ok {
			v, msg := parseDept(s)
			if msg != "" {
				fail("deptId", msg)
			}
			d.DeptID = v
		}
		if s, ok := cell(rec, colRole); ok {
			v, msg := parseRole(s)
			if msg != "" {
				fail("role", msg)
			}
			d.Role = v
		}
		if s, ok := cell(rec, colStatus); ok {
			v, msg := parseStatus(s)
			if msg != "" {
				fail("status", msg)
			}
			d.Status = v
		}
		if !bad {
			out = append(out, d)
		}
	}
}

func csvError(err error, line int) *LineError {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{Line: pe.StartLine, Msg: pe.Err.Error()}
	}
	return &LineError{Line: line, Msg: err.Error()}
}

// sourceRow is one JSON line; numbers stay raw text so that a deptId is
// read exactly from its digits (a 64-bit id as a JSON number included),
// never rounded through a float64.
type sourceRow struct {
	UserID json.RawMessage `json:"userId"`
	DeptID json.RawMessage `json:"deptId"`
	Role   json.RawMessage `json:"role"`
	Status json.RawMessage `json:"status"`
}

func readJSONL(r io.Reader, errs *lineErrors) []Desired {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxRowSize)
	var out []Desired
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var row sourceRow
		if err := json.Unmarshal(b, &row); err != nil {
			msg := err.Error()
			var se *json.SyntaxError
			if errors.As(err, &se) {
				msg = fmt.Sprintf("not a JSON object (%v at byte %d)", se, se.Offset)
			}
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field == "" {
				msg = "want a JSON object, got " + te.Value
			}
			errs.add(&LineError{Line: line, Msg: msg})
			continue
		}
		d := Desired{Line: line}
		bad := false
		fail := func(field, msg string) {
			errs.add(&LineError{Line: line, Field: field, Msg: msg})
			bad = true
		}
		uid, kind := jsonText(row.UserID)
		switch {
		case kind == jsonNull:
			fail("userId", "required")
		case kind != jsonString:
			fail("userId", "want a string of digits (a JSON string: a number above 2^53 loses digits)")
		default:
			if msg := checkUserID(uid); msg != "" {
				fail("userId", msg)
			}
			d.UserID = uid
		}
		if s, kind := jsonText(row.DeptID); kind == jsonString || kind == jsonNumber {
			v, msg := parseDept(s)
			if msg != "" {
				fail("deptId", msg)
			}
			d.DeptID = v
		} else if kind == jsonOther {
			fail("deptId", "want a string or a number")
		}
		if s, kind := jsonText(row.Role); kind == jsonNumber || kind == jsonString {
			v, msg := parseRole(s)
			if msg != "" {
				fail("role", msg)
			}
			d.Role = v
		} else if kind == jsonOther {
			fail("role", "want a number")
		}
		if s, kind := jsonText(row.Status); kind == jsonNumber || kind == jsonString {
			v, msg := parseStatus(s)
			if msg != "" {
				fail("status", msg)
			}
			d.Status = v
		} else if kind == jsonOther {
			fail("status", "want 0 or 1")
		}
		if !bad {
			out = append(out, d)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			errs.add(&LineError{Line: line + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxRowSize)})
		} else {
			errs.io = err
		}
	}
	return out
}

type jsonKind int

const (
	jsonNull jsonKind = iota // absent or null
	jsonString
	jsonNumber
	jsonOther
)

// jsonText returns the text of a JSON string or number member.
func jsonText(raw json.RawMessage) (string, jsonKind) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", jsonNull
	case raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", jsonOther
		}
		return strings.TrimSpace(s), jsonString
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		return string(raw), jsonNumber
	}
	return "", jsonOther
}

// checkUserID returns what is wrong with an OrgID user id, "" when nothing.
func checkUserID(s string) string {
	if s == "" {
		return "required"
	}
	if len(s) > 64 {
		return fmt.Sprintf("%d characters, at most 64", len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Sprintf("%q: want a string of digits", clip(s))
		}
	}
	return ""
}

func parseDept(s string) (*int64, string) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return nil, fmt.Sprintf("%q: want a positive integer", clip(s))
	}
	return &v, ""
}

func parseRole(s string) (*int, string) {
	v, err := strconv.Atoi(s)
	if err != nil || !kdapi.ValidRole(v) {
		return nil, fmt.Sprintf("%q is not a role (0, 1, 2, 3, 5)", clip(s))
	}
	return &v, ""
}

func parseStatus(s string) (*int, string) {
	var v int
	switch strings.ToLower(s) {
	case "0", "enabled":
		v = kdapi.StatusEnabled
	case "1", "disabled":
		v = kdapi.StatusDisabled
	default:
		return nil, fmt.Sprintf("%q: want 0 (enabled) or 1 (disabled)", clip(s))
	}
	return &v, ""
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// StateInfo counts what ReadState found in the bucket.
type StateInfo struct {
	// Records is the number of keys read.
	Records int `json:"records"`
	// Deleted counts users kdsync hard-deleted: desired disabled or absent.
	Deleted int `json:"deleted"`
	// Unknown counts records with no applied state (only dead letters or
	// skips so far): not compared.
	Unknown int `json:"unknown"`
	// Unreadable counts keys that are not a user's (a hashed key, whose
	// user id cannot be recovered, or a value that does not decode).
	Unreadable int `json:"unreadable"`
}

// ReadState reads the desired state from kdsync's own records: every key
// of the state bucket (KDSYNC_STATE), each a outcome.Record under
// outcome.KVKey(userId). A record that exists says the user should look
// as kdsync last left it; see the package doc for hard-deleted users and
// records with nothing applied.
func ReadState(ctx context.Context, kv jetstream.KeyValue) ([]Desired, StateInfo, error) {
	var info StateInfo
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, info, fmt.Errorf("reconcile: read state bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []Desired
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case e, ok = <-w.Updates():
		case <-ctx.Done():
			return nil, info, fmt.Errorf("reconcile: read state bucket: %w", ctx.Err())
		}
		if !ok {
			return nil, info, errors.New("reconcile: read state bucket: the watch ended early")
		}
		if e == nil {
			return out, info, nil // every current value has been seen
		}
		info.Records++
		d, kind := desiredFromRecord(e.Key(), e.Value())
		switch kind {
		case recordUnreadable:
			info.Unreadable++
		case recordUnknown:
			info.Unknown++
		case recordDeleted:
			info.Deleted++
			out = append(out, d)
		default:
			out = append(out, d)
		}
	}
}

type recordKind int

const (
	recordPresent recordKind = iota
	recordDeleted
	recordUnknown
	recordUnreadable
)

// desiredFromRecord maps a state-bucket entry to a desired user.
func desiredFromRecord(key string, value []byte) (Desired, recordKind) {
	user, ok := strings.CutPrefix(key, "u.")
	if !ok || checkUserID(user) != "" || outcome.KVKey(user) != key {
		return Desired{}, recordUnreadable
	}
	rec, err := outcome.DecodeRecord(value)
	if err != nil {
		return Desired{}, recordUnreadable
	}
	d := Desired{UserID: user, Seq: rec.Seq}
	s := rec.State
	switch {
	case s.Exists:
		d.DeptID, d.Role, d.Status = s.DeptID, s.Role, s.Status
		return d, recordPresent
	case rec.AppliedSeq > 0:
		d.Absent = true
		return d, recordDeleted
	}
	return Desired{}, recordUnknown
}

// ReadUser reads the desired state of one user from kdsync's record of it
// in the state bucket, as ReadState does for all. ok is false when there
// is no record, or one that says nothing (no event applied yet).
func ReadUser(ctx context.Context, kv jetstream.KeyValue, user string) (d Desired, ok bool, err error) {
	e, err := kv.Get(ctx, outcome.KVKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Desired{}, false, nil
	}
	if err != nil {
		return Desired{}, false, fmt.Errorf("reconcile: record of %s: %w", user, err)
	}
	d, kind := desiredFromRecord(e.Key(), e.Value())
	switch kind {
	case recordUnreadable:
		return Desired{}, false, fmt.Errorf("reconcile: record of %s is unreadable", user)
	case recordUnknown:
		return Desired{}, false, nil
	}
	return d, true, nil
}

// OpenSource opens the source file name, - being standard input, and
// returns it with its modification time (zero for standard input), for
// Options.AsOf; closeSource closes it.
func OpenSource(name string) (src io.Reader, modTime time.Time, closeSource func(), err error) {
	if name == "-" {
		return os.Stdin, time.Time{}, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	if fi, err := f.Stat(); err == nil {
		modTime = fi.ModTime()
	}
	return f, modTime, func() { _ = f.Close() }, nil
}
