package ingest

// HTTPMaxBodyBytes is the largest HTTP/JSON request body: the gRPC request
// limit with room for base64 (bytes fields such as attachment content are
// base64 in JSON, 4 bytes for 3) and JSON's field names. A request gRPC
// accepts is accepted over HTTP too; over it the answer is 413.
func (c Config) HTTPMaxBodyBytes() int64 {
	return int64(c.GRPCMaxRecvBytes)/3*4 + envelopeHeadroom
}
