package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// GRPCStreamLen is how many messages each server-streaming call of
// GRPCLoad asks for (and must get).
const GRPCStreamLen = 3

// GRPCLoad is steady gRPC load through the router on hello's gRPC side
// (`hello --grpc`): each worker alternates a unary call (UnaryCall) and a
// server-streaming call of GRPCStreamLen messages (StreamingOutputCall),
// over h2c with prior knowledge, with :authority the service's name. A
// call fails when its status is not OK or a stream is short.
type GRPCLoad struct {
	cc               *grpc.ClientConn
	stop             chan struct{}
	once             sync.Once
	wg               sync.WaitGroup
	unaryN, streamN  atomic.Int64
	failedN          atomic.Int64
	mu               sync.Mutex
	versions, byCode map[string]int64
}

// StartGRPCLoad starts workers against addr for service.
func StartGRPCLoad(addr, service string, workers int) (*GRPCLoad, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(service))
	if err != nil {
		return nil, fmt.Errorf("grpc load: %w", err)
	}
	l := &GRPCLoad{cc: cc, stop: make(chan struct{}), versions: map[string]int64{}, byCode: map[string]int64{}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := testgrpc.NewTestServiceClient(cc)
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if i%2 == 0 {
					l.unary(c)
				} else {
					l.stream(c)
				}
			}
		}()
	}
	return l, nil
}

func (l *GRPCLoad) unary(c testgrpc.TestServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		l.fail(err)
		return
	}
	l.unaryN.Add(1)
	l.mu.Lock()
	l.versions[resp.GetServerId()]++
	l.mu.Unlock()
}

func (l *GRPCLoad) stream(c testgrpc.TestServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	params := make([]*testgrpc.ResponseParameters, GRPCStreamLen)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{}
	}
	st, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		l.fail(err)
		return
	}
	n := 0
	for {
		_, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			l.fail(err)
			return
		}
		n++
	}
	if n != GRPCStreamLen {
		l.fail(status.Errorf(codes.DataLoss, "stream of %d messages, want %d", n, GRPCStreamLen))
		return
	}
	l.streamN.Add(1)
}

func (l *GRPCLoad) fail(err error) {
	select {
	case <-l.stop:
		return // cut by Stop
	default:
	}
	l.failedN.Add(1)
	l.mu.Lock()
	l.byCode[status.Code(err).String()]++
	l.mu.Unlock()
}

// Stop ends the load (idempotent) and closes its connection.
func (l *GRPCLoad) Stop() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		_ = l.cc.Close()
	})
}

// OK is the number of calls that succeeded so far: unary and streaming.
func (l *GRPCLoad) OK() (unary, streams int64) { return l.unaryN.Load(), l.streamN.Load() }

// Failed is the number of failed calls so far.
func (l *GRPCLoad) Failed() int64 { return l.failedN.Load() }

// Codes lists the failed calls by status code ("Unavailable=12 …").
func (l *GRPCLoad) Codes() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return counted(l.byCode)
}

// Versions lists the versions that answered unary calls ("v1=100 v2=50").
func (l *GRPCLoad) Versions() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return counted(l.versions)
}

// Version reports how many unary calls version answered so far.
func (l *GRPCLoad) Version(version string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.versions[version]
}

func counted(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
