package reading

import (
	"encoding/json"
	"testing"
)

func TestUnescapeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	cases := []string{
		`"plain"`, `"\"\\\/\b\f\n\r\t"`, `"\u00e9\u6E29"`, `"\ud83d\ude00"`,
		`"\ud83d"`, `"\ud83dx"`, `"\ude00\ud83d"`, `"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`, `"a\u0000b"`,
	}
	for _, raw := range cases {
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		end, escaped, what := scanString([]byte(raw), 0)
		if what != "" || end != len(raw) {
			t.Fatalf("scanString(%s) = %d, %q", raw, end, what)
		}
		got := stringContent([]byte(raw), token{start: 0, end: end, kind: tokString, escaped: escaped})
		if string(got) != want {
			t.Errorf("unescape %s = %q, want %q", raw, got, want)
		}
	}
}
