// Package mimecheck reads raw messages back with a MIME parser nobody here
// wrote, Python's standard email package (policy.default), so tests can check
// what the project builds and what servers store against an independent
// reading rather than against pkg/mime's own idea of MIME.
//
// It needs python3 on PATH (any 3.8+; the email package is part of the
// standard library). Without it Parse fails and says so; tests never skip.
package mimecheck

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

//go:embed parse.py
var script string

// Message is what the parser understood of one message.
type Message struct {
	// Headers in order, values decoded (RFC 2047 words, folding undone).
	Headers [][2]string `json:"headers"`
	Subject string      `json:"subject"`
	// Addresses of From, Sender, Reply-To, To, Cc and Bcc (lower-case keys),
	// present only for headers the message has.
	Addresses map[string][]Address `json:"addresses"`
	MessageID string               `json:"message_id"`
	// Parts in walk order, multipart containers included.
	Parts []Part `json:"parts"`
	// Defects are the parser's complaints (class names such as
	// "InvalidHeaderDefect"); a well-formed message has none.
	Defects []string `json:"defects"`
	Error   string   `json:"error"`
}

// Address is one parsed mailbox.
type Address struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Part is one leaf (or, with Multipart, container) of the MIME tree.
type Part struct {
	ContentType      string `json:"content_type"`
	Multipart        bool   `json:"multipart"`
	Charset          string `json:"charset"`
	Disposition      string `json:"disposition"` // "inline", "attachment" or ""
	Filename         string `json:"filename"`
	ContentID        string `json:"content_id"` // as written, with angle brackets
	TransferEncoding string `json:"transfer_encoding"`
	// Size and SHA256 are of the decoded content (transfer encoding undone).
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
	// Text is the decoded text of text/* parts, with "\n" line ends.
	Text string `json:"text"`
}

// Header returns the values of the header name (case-insensitive).
func (m *Message) Header(name string) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h[0], name) {
			out = append(out, h[1])
		}
	}
	return out
}

// Leaves returns the non-multipart parts.
func (m *Message) Leaves() []Part {
	var out []Part
	for _, p := range m.Parts {
		if !p.Multipart {
			out = append(out, p)
		}
	}
	return out
}

var (
	pythonOnce sync.Once
	python     string
	pythonErr  error
)

// interpreter is the real python3 binary: asked once, so that a launcher in
// front of it (a pyenv shim takes over half a second) runs only once.
func interpreter() (string, error) {
	pythonOnce.Do(func() {
		if _, err := exec.LookPath("python3"); err != nil {
			pythonErr = errors.New("mimecheck: python3 is not installed (apt-get install python3)")
			return
		}
		out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
		python = strings.TrimSpace(string(out))
		if err != nil || python == "" {
			python = "python3"
		}
	})
	return python, pythonErr
}

// Parse parses each raw message, in one python3 process.
func Parse(ctx context.Context, raws ...[]byte) ([]Message, error) {
	py, err := interpreter()
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(raws) // []byte marshals as base64
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, py, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("mimecheck: python3: %w: %s", err, stderr.String())
	}
	var out []Message
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("mimecheck: decode parser output: %w", err)
	}
	if len(out) != len(raws) {
		return nil, fmt.Errorf("mimecheck: %d results for %d messages", len(out), len(raws))
	}
	for i := range out {
		for j := range out[i].Parts {
			p := &out[i].Parts[j]
			p.Text = strings.ReplaceAll(p.Text, "\r\n", "\n")
		}
	}
	return out, nil
}

// ParseOne parses one message; a parser error is an error.
func ParseOne(ctx context.Context, raw []byte) (*Message, error) {
	ms, err := Parse(ctx, raw)
	if err != nil {
		return nil, err
	}
	if ms[0].Error != "" {
		return nil, fmt.Errorf("mimecheck: %s", ms[0].Error)
	}
	return &ms[0], nil
}
