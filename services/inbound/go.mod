module github.com/namirasoft/email-sender/services/inbound

go 1.26.8

require github.com/namirasoft/email-sender/pkg v0.0.0-00010101000000-000000000000

replace (
	github.com/namirasoft/email-sender/pkg => ../../pkg
	github.com/namirasoft/email-sender/pkg/provider => ../../pkg/provider
	github.com/namirasoft/email-sender/pkg/testkit => ../../pkg/testkit
	github.com/namirasoft/email-sender/proto => ../../proto
)
