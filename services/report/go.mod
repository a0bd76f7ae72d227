module github.com/namirasoft/email-sender/services/report

go 1.26.8
