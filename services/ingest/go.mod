module github.com/namirasoft/email-sender/services/ingest

go 1.26.8
