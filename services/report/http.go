package report

// The HTTP/JSON gateway's bounds: ReportService calls are GETs with query
// parameters, SNS posts at most 256 KiB of message; a page of messages is at
// most maxPageSize of them.
const (
	httpMaxBodyBytes     = 1 << 20
	httpMaxResponseBytes = 64 << 20
)
