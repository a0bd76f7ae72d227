module github.com/namirasoft/email-sender/pkg

go 1.26.8
