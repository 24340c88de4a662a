package kdsim

import (
	"encoding/json"
	"testing"
)

func TestAppendString(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, want string }{
		"plain":        {"Alice", "Alice"},
		"quote":        {`a"b\c`, `a"b\c`},
		"controls":     {"a\nb\tc\rd\x00e\x1f", "a\nb\tc\rd\x00e\x1f"},
		"unicode":      {"Zoë 中文 🙂", "Zoë 中文 🙂"},
		"html":         {"<a>&</a>", "<a>&</a>"},
		"invalid utf8": {"a\xffb\xc3", "a\ufffdb\ufffd"},
		"empty":        {"", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := appendString(nil, tc.in)
			var got string
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%q is not valid JSON: %v", b, err)
			}
			if got != tc.want {
				t.Errorf("decoded %q, want %q", got, tc.want)
			}
		})
	}
}
