package kdapi

import "testing"

func TestTokensMatch(t *testing.T) {
	set := NewTokens("0123456789abcdef-old", "0123456789abcdef-new")
	for token, want := range map[string]bool{
		"0123456789abcdef-old": true,
		"0123456789abcdef-new": true,
		"0123456789abcdef":     false, // a prefix
		"0123456789abcdef-ne":  false,
		"":                     false,
	} {
		if got := set.Match(token); got != want {
			t.Errorf("Match(%q) = %v, want %v", token, got, want)
		}
	}
	if NewTokens().Match("") {
		t.Error("an empty set matched the empty token")
	}
}
