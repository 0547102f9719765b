// Package doccheck finds the runnable commands of the project's Markdown
// docs and checks their output, so a renamed flag, command or table breaks
// the build rather than the reader.
//
// A runnable step is a fenced block whose info string is "sh run":
//
//	```sh run
//	bin/starter seed --devices 4 --days 1 --end 2026-01-02
//	```
//
// It may be followed (blank lines apart) by the output the reader should
// see, a fenced block whose info string is "text output". Each non-blank
// line of it must match a line of the command's output, in order (other
// output lines may come between). "…" in an expected line matches any run
// of characters, so timestamps and durations can be elided; the rest of the
// line matches exactly, trailing spaces aside.
//
// Any other fenced block (```sh, ```text, ```sql) is for reading only.
package doccheck

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
	"unicode"
)

// Step is one runnable block and what its output must contain.
type Step struct {
	File   string
	Line   int // of the opening fence
	Script string
	Expect []string // the non-blank lines of the "text output" block
}

func (s Step) String() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// Parse returns the runnable steps of the Markdown file at path, in order.
func Parse(path string) ([]Step, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseText(path, string(b))
}

// ParseText is Parse of the text of a file named name.
func ParseText(name, text string) ([]Step, error) {
	type block struct {
		info  string
		line  int
		lines []string
	}
	var blocks []block
	var cur *block
	var fence string
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	gap := false // a non-blank line outside blocks since the last block
	var gaps []bool
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur == nil {
			if f := fenceOf(trimmed); f != "" {
				fence = f
				cur = &block{info: strings.TrimSpace(trimmed[len(f):]), line: n}
				gaps = append(gaps, gap)
				gap = false
				continue
			}
			if trimmed != "" {
				gap = true
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.TrimLeft(trimmed, fence[:1]) == "" {
			blocks = append(blocks, *cur)
			cur = nil
			continue
		}
		cur.lines = append(cur.lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: fenced block never closed", name, cur.line)
	}
	var steps []Step
	for i, b := range blocks {
		switch b.info {
		case "sh run":
			script := strings.TrimSpace(strings.Join(b.lines, "\n"))
			if script == "" {
				return nil, fmt.Errorf("%s:%d: empty runnable block", name, b.line)
			}
			steps = append(steps, Step{File: name, Line: b.line, Script: script})
		case "text output":
			if i == 0 || blocks[i-1].info != "sh run" || gaps[i] {
				return nil, fmt.Errorf("%s:%d: a \"text output\" block must follow a \"sh run\" block directly", name, b.line)
			}
			s := &steps[len(steps)-1]
			for _, l := range b.lines {
				if l = strings.TrimRight(l, " \t"); strings.TrimSpace(l) != "" {
					s.Expect = append(s.Expect, l)
				}
			}
		}
	}
	return steps, nil
}

// fenceOf is the fence (``` or ~~~, possibly longer) opening line, or "".
func fenceOf(line string) string {
	for _, c := range []string{"`", "~"} {
		if strings.HasPrefix(line, c+c+c) {
			return line[:len(line)-len(strings.TrimLeft(line, c))]
		}
	}
	return ""
}

// Check reports the first expected line not found, in order, in output.
func (s Step) Check(output string) error {
	lines := strings.Split(output, "\n")
	at := 0
	for _, want := range s.Expect {
		re := pattern(want)
		found := false
		for at < len(lines) {
			got := strings.TrimRight(lines[at], " \t\r")
			at++
			if re.MatchString(got) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s: expected output line not found (in order): %q", s, want)
		}
	}
	return nil
}

// pattern compiles an expected line: literal text, "…" for any run of
// characters, anchored at both ends.
func pattern(want string) *regexp.Regexp {
	parts := strings.Split(strings.TrimRight(want, " \t"), "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// Link is a relative Markdown link: [text](File#Anchor), File empty for a
// link within the same file.
type Link struct {
	Line         int
	File, Anchor string
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]*)\)`)

// Links are the relative links of a Markdown text outside fenced blocks
// (http(s) and mailto links are left out).
func Links(text string) []Link {
	var out []Link
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if f := fenceOf(trimmed); f != "" {
				fence = f
				continue
			}
		} else {
			if strings.HasPrefix(trimmed, fence) && strings.TrimLeft(trimmed, fence[:1]) == "" {
				fence = ""
			}
			continue
		}
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			target := m[1]
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			out = append(out, Link{Line: i + 1, File: file, Anchor: anchor})
		}
	}
	return out
}

// Anchors are the ids GitHub gives the headings of a Markdown text:
// lowercased, punctuation other than "-" and "_" dropped, spaces as "-",
// repeats suffixed -1, -2, ...
func Anchors(text string) map[string]bool {
	out := map[string]bool{}
	fence := ""
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if f := fenceOf(trimmed); f != "" {
				fence = f
				continue
			}
		} else {
			if strings.HasPrefix(trimmed, fence) && strings.TrimLeft(trimmed, fence[:1]) == "" {
				fence = ""
			}
			continue
		}
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		id := b.String()
		if out[id] {
			for n := 1; ; n++ {
				if alt := fmt.Sprintf("%s-%d", id, n); !out[alt] {
					id = alt
					break
				}
			}
		}
		out[id] = true
	}
	return out
}
