package router_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/services/router/proxy"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/testkit"
)

// grpcBackend is a real gRPC server (grpc-go's own transport, h2c) whose
// calls answer name, or fail with code when it is not OK.
func grpcBackend(t *testing.T, name string, code codes.Code) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &testService{name: name, code: code})
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	return l.Addr().String()
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	name string
	code codes.Code
}

func (s *testService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if s.code != codes.OK {
		return nil, status.Error(s.code, "failing on purpose")
	}
	return &testgrpc.SimpleResponse{ServerId: s.name}, nil
}

func (s *testService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, st testgrpc.TestService_StreamingOutputCallServer) error {
	for i, p := range req.GetResponseParameters() {
		select {
		case <-st.Context().Done():
			return st.Context().Err()
		case <-time.After(time.Duration(p.GetIntervalUs()) * time.Microsecond):
		}
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: fmt.Appendf(nil, "%s #%d", s.name, i)}}); err != nil {
			return err
		}
	}
	if s.code != codes.OK {
		return status.Error(s.code, "failing after the messages") // in the trailers
	}
	return nil
}

// FullDuplexCall echoes each message as it comes, prefixed with the name.
func (s *testService) FullDuplexCall(st testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		body := append([]byte(s.name+" "), req.GetPayload().GetBody()...)
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

// pingPong makes a bidirectional call of n turns: each message is sent
// only once the answer to the one before came back, so a proxy that held
// the request stream until its end would stall it.
func pingPong(cc *grpc.ClientConn, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		return nil, err
	}
	var got []string
	for i := range n {
		if err := st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: fmt.Appendf(nil, "ping %d", i)}}); err != nil {
			return got, err
		}
		m, err := st.Recv()
		if err != nil {
			return got, err
		}
		got = append(got, string(m.GetPayload().GetBody()))
	}
	if err := st.CloseSend(); err != nil {
		return got, err
	}
	if _, err := st.Recv(); err != io.EOF {
		return got, fmt.Errorf("after the last turn: %v", err)
	}
	return got, nil
}

// grpcRig is a rig whose hello speaks gRPC (protocol grpc).
func grpcRig(t *testing.T) *rig {
	return newRigSpec(t, spec.Service{Name: "hello", Owner: "t", Capacity: 1, Protocol: spec.ProtocolGRPC, Artifact: spec.Artifact{Command: []string{"x"}}})
}

// switchTo moves all of hello's traffic to group, and fails the test
// unless the router announces it.
func (r *rig) switchTo(group string) {
	r.t.Helper()
	if ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: group}); ev.Type != events.TrafficSwitched.Type() {
		r.t.Fatalf("switch to %s answered %s %s", group, ev.Type, ev.Data)
	}
}

// unary makes a unary call and returns the server's id.
func unary(cc *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	return resp.GetServerId(), err
}

// stream makes a server-streaming call of n messages and returns the
// messages and the call's status.
func stream(cc *grpc.ClientConn, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	params := make([]*testgrpc.ResponseParameters, n)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{}
	}
	st, err := testgrpc.NewTestServiceClient(cc).StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		return nil, err
	}
	var got []string
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, string(m.GetPayload().GetBody()))
	}
}

// gRPC through the router, on the shared port with h2c prior knowledge and
// on the TLS port by ALPN: a unary, a server-streaming and a bidirectional
// call reach the group by the route, statuses in trailers come back to the client, and
// the samples count the failing group's UNAVAILABLE as errors.
func TestGRPCThroughTheRouter(t *testing.T) {
	r := grpcRig(t)
	cert, key := testkit.SelfSigned(t, "hello")
	svc, url := r.startRouter(router.Config{HTTPS: "127.0.0.1:0", TLSCert: cert, TLSKey: key})
	r.register("hello-v001", "a", grpcBackend(t, "A", codes.OK))
	r.switchTo("hello-v001")

	h2c, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer h2c.Close()
	pem, _ := os.ReadFile(cert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tlsConn, err := grpc.NewClient(svc.TLSAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "hello"})), grpc.WithAuthority("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer tlsConn.Close()
	for name, cc := range map[string]*grpc.ClientConn{"h2c": h2c, "TLS": tlsConn} {
		id, err := unary(cc)
		if err != nil || id != "A" {
			t.Fatalf("%s: unary %q, %v", name, id, err)
		}
		msgs, err := stream(cc, 5)
		if err != nil || len(msgs) != 5 || msgs[4] != "A #4" {
			t.Fatalf("%s: stream %q, %v", name, msgs, err)
		}
		turns, err := pingPong(cc, 3)
		if err != nil || len(turns) != 3 || turns[2] != "A ping 2" {
			t.Fatalf("%s: bidirectional stream %q, %v", name, turns, err)
		}
	}

	// a group that fails: UNAVAILABLE comes back (trailers-only for the
	// unary call, after the messages for the stream) and counts as 5xx
	samples, _ := r.nc.SubscribeSync(subjects.GroupSamples("hello", "hello-v002"))
	r.register("hello-v002", "b", grpcBackend(t, "B", codes.Unavailable))
	r.switchTo("hello-v002")
	const calls = 20
	for range calls {
		if _, err := unary(h2c); status.Code(err) != codes.Unavailable {
			t.Fatalf("unary on the failing group: %v", err)
		}
		if _, err := unary(tlsConn); status.Code(err) != codes.Unavailable {
			t.Fatalf("unary over TLS on the failing group: %v", err)
		}
		if msgs, err := stream(h2c, 3); status.Code(err) != codes.Unavailable || len(msgs) != 3 {
			t.Fatalf("stream on the failing group: %q %v (want its 3 messages, then UNAVAILABLE)", msgs, err)
		}
	}
	requests, failed, _ := counts(t, r.nc, samples, 3*calls)
	if requests < 3*calls || failed != requests {
		t.Fatalf("the failing group's samples: %d requests, %d failed; want ≥ %d, all failed", requests, failed, 3*calls)
	}
}

// An HTTP/2 client of an HTTP/1.1 service: h2c with prior knowledge on the
// shared port, proxied to the instance as HTTP/1.1; the router's own
// errors answer over HTTP/2 too.
func TestHTTP2ClientOfAnHTTP1Service(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{})
	r.register("hello-v001", "a", backend(t, "A", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("X-Seen-Proto", req.Proto)
		w.Header().Set("X-Seen-Forwarded-For", req.Header.Get("X-Forwarded-For"))
		w.Header().Set("Trailer", "X-Sum")
		fmt.Fprint(w, "A")
		w.Header().Set("X-Sum", "42")
	}))
	r.switchTo("hello-v001")
	client := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	get2 := func(host string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", url+"/x", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := get2("hello")
	if resp.StatusCode != 200 || body != "A" || resp.ProtoMajor != 2 || resp.Header.Get("X-Seen-Proto") != "HTTP/1.1" ||
		resp.Trailer.Get("X-Sum") != "42" || resp.Header.Get("X-Seen-Forwarded-For") != "127.0.0.1" {
		t.Fatalf("h2c GET: %d %q proto %d, upstream %q, trailer %q, forwarded for %q", resp.StatusCode, body, resp.ProtoMajor,
			resp.Header.Get("X-Seen-Proto"), resp.Trailer.Get("X-Sum"), resp.Header.Get("X-Seen-Forwarded-For"))
	}
	if resp, _ := get2("nobody"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(proxy.ErrorHeader) == "" {
		t.Fatalf("h2c GET of an unrouted host: %d %v", resp.StatusCode, resp.Header)
	}
	// HTTP/1.1 on the same port is unchanged
	if resp, body := get(t, url, "hello", nil); resp.StatusCode != 200 || body != "A" || resp.ProtoMajor != 1 {
		t.Fatalf("HTTP/1.1 GET: %d %q proto %d", resp.StatusCode, body, resp.ProtoMajor)
	}
}

// A caller that leaves in the middle of a stream (its own deadline or
// cancel) is not the instance's failure: the samples count the call, not
// as an error, so a canary is never failed by its callers' cancels.
func TestGRPCCallerLeavingIsNotAnError(t *testing.T) {
	r := grpcRig(t)
	_, url := r.startRouter(router.Config{})
	samples, _ := r.nc.SubscribeSync(subjects.GroupSamples("hello", "hello-v001"))
	r.register("hello-v001", "a", grpcBackend(t, "A", codes.OK))
	r.switchTo("hello-v001")
	cc, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	const calls = 5
	for range calls {
		ctx, cancel := context.WithCancel(context.Background())
		params := []*testgrpc.ResponseParameters{{}, {IntervalUs: 10e6}} // the second message in 10 s
		st, err := testgrpc.NewTestServiceClient(cc).StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel() // gone before the stream's end
		if _, err := st.Recv(); status.Code(err) != codes.Canceled {
			t.Fatalf("after the cancel: %v", err)
		}
	}
	requests, failed, _ := counts(t, r.nc, samples, calls)
	if requests < calls || failed != 0 {
		t.Fatalf("samples: %d requests, %d failed; want the %d cancelled calls counted, none failed", requests, failed, calls)
	}
}
