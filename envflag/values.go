package envflag

import (
	"fmt"
	"os"
	"strings"
)

// Secret returns a secret given as value (a flag or its variable) or,
// when file is set, read from file and trimmed; not both. name names it
// in errors.
func Secret[S ~string](name, value, file string) (S, error) {
	switch {
	case value != "" && file != "":
		return "", fmt.Errorf("%s: give the value or a file, not both", name)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s file: %w", name, err)
		}
		return S(strings.TrimSpace(string(b))), nil
	}
	return S(value), nil
}

// Secrets reads comma- or newline-separated secrets as Secret reads one.
func Secrets[S ~string](name, value, file string) ([]S, error) {
	if value != "" && file != "" {
		return nil, fmt.Errorf("%s: give the value or a file, not both", name)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s file: %w", name, err)
		}
		value = string(b)
	}
	var out []S
	for _, s := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, S(s))
		}
	}
	return out, nil
}

// List splits a comma-separated value, dropping blanks.
func List(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
