package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// GRPC returns hello's handler in its gRPC mode (--grpc): gRPC calls (HTTP/2
// with a content type of application/grpc) go to a gRPC server with
// grpc.testing.TestService, grpc.health.v1.Health and server reflection;
// everything else, the
// health check /healthz among it, to the app's HTTP side. Serve it with
// HTTP/1.1 and unencrypted HTTP/2 both enabled (Protocols).
//
// UnaryCall answers the version as server_id and the instance as hostname;
// StreamingOutputCall sends one message per response parameter, waiting
// each one's interval, its payload "hello from <version> (<instance>) #i".
// The failure modes are the app's, as gRPC statuses: --fail-after answers
// INTERNAL, --error-rate UNAVAILABLE; the health service says NOT_SERVING
// when /healthz fails.
func (a *App) GRPC() (http.Handler, func()) {
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, testService{a: a})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs) // grpcurl and the like list and call it without a .proto
	ctx, cancel := context.WithCancel(context.Background())
	go a.reportHealth(ctx, hs)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		a.ServeHTTP(w, r)
	})
	return h, func() { cancel(); hs.Shutdown(); gs.Stop() }
}

// reportHealth keeps the health service's status the app's, every 100 ms.
func (a *App) reportHealth(ctx context.Context, hs *health.Server) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if !a.healthy() {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		hs.SetServingStatus("", st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	a *App
}

// failed is a request's injected failure as a gRPC status (nil: none).
func (s testService) failed() error {
	f := s.a.work()
	switch {
	case f == nil:
		return nil
	case f.broken:
		return status.Error(codes.Internal, f.reason)
	default:
		return status.Error(codes.Unavailable, f.reason)
	}
}

func (s testService) hello() string {
	return fmt.Sprintf("hello from %s (%s)", s.a.cfg.Version, s.a.cfg.Instance)
}

// UnaryCall answers with the version and the instance.
func (s testService) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if err := s.failed(); err != nil {
		return nil, err
	}
	return &testgrpc.SimpleResponse{ServerId: s.a.cfg.Version, Hostname: s.a.cfg.Instance,
		Payload: &testgrpc.Payload{Body: []byte(s.hello())}}, nil
}

// StreamingOutputCall sends a message per response parameter.
func (s testService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	if err := s.failed(); err != nil {
		return err
	}
	for i, p := range req.GetResponseParameters() {
		if d := time.Duration(p.GetIntervalUs()) * time.Microsecond; d > 0 {
			select {
			case <-stream.Context().Done():
				return stream.Context().Err()
			case <-time.After(d):
			}
		}
		body := fmt.Sprintf("%s #%d", s.hello(), i)
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			return err
		}
	}
	return nil
}
