package mailtemplate

import (
	"strings"

	"golang.org/x/net/html"
)

// blocks are the elements that start on a line of their own.
var blocks = map[string]bool{
	"address": true, "article": true, "aside": true, "blockquote": true, "div": true,
	"dl": true, "dt": true, "dd": true, "fieldset": true, "figure": true, "footer": true,
	"form": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true,
	"header": true, "hr": true, "li": true, "main": true, "nav": true, "ol": true, "p": true,
	"pre": true, "section": true, "table": true, "tr": true, "ul": true, "center": true,
}

// paragraphs are the blocks separated from what surrounds them by a blank line.
var paragraphs = map[string]bool{
	"p": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true,
	"table": true, "ul": true, "ol": true, "blockquote": true, "pre": true, "hr": true,
}

// attrOf is the attribute HTMLToText reads of an element.
var attrOf = map[string]string{"a": "href", "img": "alt"}

// skipped are the elements whose content is not text.
var skipped = map[string]bool{"head": true, "script": true, "style": true, "title": true, "template": true, "noscript": true}

// HTMLToText is a plain-text rendition of an HTML document: text with its
// whitespace collapsed, block elements on lines of their own (paragraphs,
// headings, lists and tables separated by a blank line), <br> as a line
// break, list items prefixed with "- ", table cells separated by spaces, a
// link as "text (url)" (just the url when the text is the url), images by
// their alt text; <head>, <script> and <style> dropped.
func HTMLToText(src string) string {
	z := html.NewTokenizer(strings.NewReader(src))
	var (
		b       textBuilder
		skip    int // depth inside skipped elements
		pre     int
		hrefs   []string // the open <a>s' hrefs
		linkPos []int    // where each open <a>'s text starts in b
	)
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return b.String()
		case html.TextToken:
			if skip > 0 {
				continue
			}
			if pre > 0 {
				b.raw(string(z.Text()))
			} else {
				b.text(string(z.Text()))
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			// The one attribute read: href of a link, alt of an image.
			var attr string
			if want := attrOf[tag]; want != "" {
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					if string(k) == want {
						attr = string(v)
					}
				}
			}
			if skipped[tag] {
				if tt == html.StartTagToken {
					skip++
				}
				continue
			}
			if skip > 0 {
				continue
			}
			switch {
			case tag == "br":
				b.br()
			case tag == "img":
				if alt := strings.TrimSpace(attr); alt != "" {
					b.text(alt)
				}
			case tag == "a" && tt == html.StartTagToken:
				hrefs = append(hrefs, attr)
				linkPos = append(linkPos, b.Len())
			case tag == "td" || tag == "th":
				b.sep()
			case paragraphs[tag]:
				b.blank()
			case blocks[tag]:
				b.newline()
			}
			if tag == "li" {
				b.text("- ")
			}
			if tag == "pre" && tt == html.StartTagToken {
				pre++
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			tag := string(name)
			if skipped[tag] {
				if skip > 0 {
					skip--
				}
				continue
			}
			if skip > 0 {
				continue
			}
			switch {
			case tag == "a" && len(hrefs) > 0:
				href := strings.TrimSpace(hrefs[len(hrefs)-1])
				start := linkPos[len(linkPos)-1]
				hrefs, linkPos = hrefs[:len(hrefs)-1], linkPos[:len(linkPos)-1]
				text := strings.TrimSpace(b.String()[min(start, b.Len()):])
				if href != "" && !strings.HasPrefix(href, "#") && strings.TrimPrefix(href, "mailto:") != text && href != text {
					if text == "" {
						b.text(href)
					} else {
						b.text(" (" + href + ")")
					}
				}
			case tag == "pre":
				if pre > 0 {
					pre--
				}
				b.blank()
			case paragraphs[tag]:
				b.blank()
			case blocks[tag]:
				b.newline()
			}
		}
	}
}

// textBuilder writes text collapsing whitespace, and line breaks without
// leading, trailing or more than one blank line.
type textBuilder struct {
	strings.Builder
	// breaks is the number of line breaks pending before the next text.
	breaks int
	// space is whether a space is pending before the next text.
	space bool
}

func (b *textBuilder) text(s string) {
	if s == "" {
		return
	}
	lead := isSpace(s[0])
	trail := isSpace(s[len(s)-1])
	// Words separated by single spaces, written as they are found.
	first := true
	for i := 0; i < len(s); {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		j := i
		for j < len(s) && !isSpace(s[j]) {
			j++
		}
		if j == i {
			break
		}
		if first {
			b.flush(lead)
			first = false
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:j])
		i = j
	}
	if first {
		b.space = b.space || lead
		return
	}
	b.space = trail
}

func (b *textBuilder) raw(s string) {
	b.flush(false)
	b.WriteString(s)
}

func (b *textBuilder) flush(lead bool) {
	if b.Len() == 0 {
		b.breaks, b.space = 0, false
		return
	}
	if b.breaks > 0 {
		b.WriteString(strings.Repeat("\n", b.breaks))
		b.breaks, b.space = 0, false
		return
	}
	if b.space || lead {
		b.WriteByte(' ')
	}
	b.space = false
}

func (b *textBuilder) newline() {
	if b.breaks < 1 {
		b.breaks = 1
	}
}

func (b *textBuilder) br() {
	if b.breaks < 2 {
		b.breaks++
	}
}

func (b *textBuilder) blank() { b.breaks = 2 }

func (b *textBuilder) sep() { b.space = true }

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' }
