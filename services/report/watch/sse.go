package watch

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// SSEPath serves WatchEvents as Server-Sent Events.
const SSEPath = "/v1/events:sse"

// RegisterSSE adds GET /v1/events:sse to the HTTP gateway: WatchEvents as
// Server-Sent Events, with the query parameters of GET /v1/events:watch
// (cursor, message_ids, types, tags[key]=value, from_start). Each event is
// "id: <cursor>", "event: <type>" (or "heartbeat") and "data: <the
// WatchEventsResponse as JSON>"; a reconnecting EventSource sends
// Last-Event-ID, which resumes like cursor. Like every gateway route it calls
// the gRPC server, so the call passes the same gate (Authorization header).
func RegisterSSE(_ context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error {
	client := emailsenderv1.NewReportServiceClient(conn)
	return mux.HandlePath(http.MethodGet, SSEPath, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		serveSSE(w, r, client)
	})
}

func serveSSE(w http.ResponseWriter, r *http.Request, client emailsenderv1.ReportServiceClient) {
	req := &emailsenderv1.WatchEventsRequest{}
	if err := runtime.PopulateQueryParameters(req, r.URL.Query(), utilities.NewDoubleArray(nil)); err != nil {
		http.Error(w, "bad query parameters", http.StatusBadRequest)
		return
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		req.Cursor = id
	}
	md := metadata.MD{}
	if a := r.Header.Get("Authorization"); a != "" {
		md.Set("authorization", a)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		md.Set("x-forwarded-for", host)
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		md.Set("grpcgateway-user-agent", ua)
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(r.Context(), md))
	defer cancel()
	stream, err := client.WatchEvents(ctx, req)
	if err != nil {
		writeStatus(w, err)
		return
	}
	first, err := stream.Recv()
	if err != nil {
		writeStatus(w, err)
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	for resp := first; ; {
		if err := WriteSSE(w, resp); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if resp, err = stream.Recv(); err != nil {
			if st, ok := status.FromError(err); ok && r.Context().Err() == nil {
				b, _ := protojson.Marshal(st.Proto())
				_, _ = fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
			}
			return
		}
	}
}

// WriteSSE writes one WatchEvents response as a Server-Sent Event: "id:
// <cursor>", "event: <type>" (or "heartbeat"), "data: <the response as
// JSON>" (the console's stream is written the same way).
func WriteSSE(w io.Writer, resp *emailsenderv1.WatchEventsResponse) error {
	b, err := protojson.Marshal(resp)
	if err != nil {
		return err
	}
	typ := "heartbeat"
	if resp.GetEvent() != nil {
		typ = resp.GetEvent().GetType()
	}
	_, err = fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", resp.GetCursor(), typ, b)
	return err
}

// writeStatus answers with a gRPC error as the gateway does: the status as
// JSON under its HTTP status.
func writeStatus(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	b, _ := protojson.Marshal(st.Proto())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(runtime.HTTPStatusFromCode(st.Code()))
	_, _ = w.Write(b)
}
