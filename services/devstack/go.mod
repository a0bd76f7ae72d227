module github.com/namirasoft/email-sender/services/devstack

go 1.26.8
