package e2e

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
)

func newQPReader(b []byte) io.Reader { return quotedprintable.NewReader(bytes.NewReader(b)) }

func decodeBase64(b []byte) ([]byte, error) {
	clean := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, b)
	return base64.StdEncoding.DecodeString(string(clean))
}
