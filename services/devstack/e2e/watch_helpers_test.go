package e2e

import (
	"context"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// watchFirst is a WatchEvents call as a row's call: the first response (the
// heartbeat that says the watch is established), or the call's error.
func watchFirst(s *stack, req *v1.WatchEventsRequest) callFunc {
	return func(ctx context.Context) (proto.Message, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := s.report.WatchEvents(ctx, req)
		if err != nil {
			return nil, err
		}
		return st.Recv()
	}
}

// watchAll is a WatchEvents call as a row's call: every response until none
// came for half a second, as a list of their JSON texts.
func watchAll(s *stack, req *v1.WatchEventsRequest) callFunc {
	return func(ctx context.Context) (proto.Message, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := s.report.WatchEvents(ctx, req)
		if err != nil {
			return nil, err
		}
		type res struct {
			r   *v1.WatchEventsResponse
			err error
		}
		ch := make(chan res)
		go func() {
			for {
				r, err := st.Recv()
				select {
				case ch <- res{r, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		var texts []any
		for {
			select {
			case x := <-ch:
				if x.err != nil {
					return nil, x.err
				}
				b, _ := protojson.Marshal(x.r)
				texts = append(texts, string(b))
			case <-time.After(500 * time.Millisecond):
				return structpb.NewList(texts)
			}
		}
	}
}
