package doccheck

import (
	"strings"
	"testing"
)

const sample = "# Guide\n\n" +
	"```sh\nmake up   # for reading only\n```\n\n" +
	"```sh run\nbin/starter seed --devices 4\n```\n\n" +
	"```text output\nseeded 4 devices …\n  readings: 5760\n```\n\n" +
	"Some prose.\n\n" +
	"````sh run\necho '```'\necho two\n````\n"

func TestParse(t *testing.T) {
	steps, err := ParseText("guide.md", sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 {
		t.Fatalf("%d steps, want 2: %+v", len(steps), steps)
	}
	if s := steps[0]; s.Line != 7 || s.Script != "bin/starter seed --devices 4" ||
		strings.Join(s.Expect, "|") != "seeded 4 devices …|  readings: 5760" {
		t.Errorf("step 1 = %+v", s)
	}
	if s := steps[1]; s.Line != 18 || s.Script != "echo '```'\necho two" || len(s.Expect) != 0 {
		t.Errorf("step 2 = %+v", s)
	}
	if steps[0].String() != "guide.md:7" {
		t.Errorf("String() = %q", steps[0].String())
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"```sh run\necho\n", "g.md:1: fenced block never closed"},
		{"```sh run\n\n```\n", "g.md:1: empty runnable block"},
		{"```text output\nx\n```\n", `g.md:1: a "text output" block must follow a "sh run" block directly`},
		{"```sh run\necho\n```\nprose\n```text output\nx\n```\n", `g.md:5: a "text output" block must follow`},
	} {
		_, err := ParseText("g.md", c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	s := Step{File: "g.md", Line: 3, Expect: []string{"seeded 4 devices …", "  readings: 5760"}}
	out := "connecting\nseeded 4 devices in 1.2s\nother\n  readings: 5760   \n"
	if err := s.Check(out); err != nil {
		t.Errorf("Check: %v", err)
	}
	for _, bad := range []string{
		"  readings: 5760\nseeded 4 devices in 1s\n",  // out of order
		"seeded 4 devices in 1s\n  readings: 57600\n", // whole-line match
		"seeded 40 devices\n  readings: 5760\n",
	} {
		if err := s.Check(bad); err == nil {
			t.Errorf("Check(%q) passed", bad)
		}
	}
	if err := s.Check("seeded 4 devices x\n"); err == nil || err.Error() != `g.md:3: expected output line not found (in order): "  readings: 5760"` {
		t.Errorf("error = %v", err)
	}
	// Regular-expression characters are literal.
	lit := Step{Expect: []string{"a.b (c) [1]*"}}
	if lit.Check("axb (c) [1]*") == nil || lit.Check("a.b (c) [1]*") != nil {
		t.Error("expected lines must match literally outside …")
	}
}

func TestLinksAndAnchors(t *testing.T) {
	text := "# The Guide\n\n## 1. Exactly once: offsets\n\nSee [a](other.md#x-y), [b](#the-guide), [c](https://example.com) and [d](dir/).\n\n" +
		"```sh\n[not](a.md)\n```\n\n## The Guide\n"
	links := Links(text)
	want := []Link{{5, "other.md", "x-y"}, {5, "", "the-guide"}, {5, "dir/", ""}}
	if len(links) != len(want) {
		t.Fatalf("links %+v, want %+v", links, want)
	}
	for i := range want {
		if links[i] != want[i] {
			t.Errorf("link %d = %+v, want %+v", i, links[i], want[i])
		}
	}
	a := Anchors(text)
	for _, id := range []string{"the-guide", "1-exactly-once-offsets", "the-guide-1"} {
		if !a[id] {
			t.Errorf("anchor %q missing from %v", id, a)
		}
	}
	if len(a) != 3 {
		t.Errorf("anchors %v, want 3", a)
	}
}
