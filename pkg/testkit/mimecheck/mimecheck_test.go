package mimecheck_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
)

func TestParse(t *testing.T) {
	raw := "From: =?utf-8?q?J=C3=B6rg?= <j@xn--bcher-kva.example>\r\n" +
		"To: a@example.com, \"B\" <b@example.com>\r\n" +
		"Subject: =?utf-8?b?SGVsbG8g8J+Mjg==?=\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=XX\r\n\r\n" +
		"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Gr=C3=BC=C3=9Fe\r\n.dot\r\n" +
		"--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"AAEC\r\n--XX--\r\n"
	m, err := mimecheck.ParseOne(context.Background(), []byte(raw))
	require.NoError(t, err)
	require.Equal(t, "Hello 🌎", m.Subject)
	require.Equal(t, []mimecheck.Address{{Name: "Jörg", Address: "j@xn--bcher-kva.example"}}, m.Addresses["from"])
	require.Len(t, m.Addresses["to"], 2)
	leaves := m.Leaves()
	require.Len(t, leaves, 2)
	require.Equal(t, "Grüße\n.dot", leaves[0].Text)
	sum := sha256.Sum256([]byte{0, 1, 2})
	require.Equal(t, hex.EncodeToString(sum[:]), leaves[1].SHA256)
	require.Equal(t, "a.bin", leaves[1].Filename)
	require.Equal(t, "attachment", leaves[1].Disposition)
	require.Empty(t, m.Defects)
}

func TestParseUTF8Headers(t *testing.T) {
	raw := "From: Jörg <jörg@xn--bcher-kva.example>\r\nTo: 用户@example.com\r\nSubject: Grüße\r\n\r\nhi\r\n"
	m, err := mimecheck.ParseOne(context.Background(), []byte(raw))
	require.NoError(t, err)
	require.Equal(t, []mimecheck.Address{{Name: "Jörg", Address: "jörg@xn--bcher-kva.example"}}, m.Addresses["from"])
	require.Equal(t, "用户@example.com", m.Addresses["to"][0].Address)
	require.Equal(t, "Grüße", m.Subject)
}
