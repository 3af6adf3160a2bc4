// Package moto runs moto_server (a local AWS API) for tests: on a free
// loopback port, reset between tests, always stopped. If moto_server is not
// installed the test fails, saying so: AWS tests never skip silently.
package moto

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Server is a running moto_server.
type Server struct {
	URL    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts moto_server for the test and stops it when the test ends.
// The port is picked free, then handed to moto, so another test (another
// package's moto) can take it in between: Start then sees that the process
// listening there is not its own, and tries another port. Without the check
// two packages could share one moto and see each other's resources.
func Start(t testing.TB) *Server {
	t.Helper()
	path, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatalf("moto_server is not installed (pip install 'moto[server]'): the aws provider's tests need it and never skip: %v", err)
	}
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := start(path)
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		last = err
	}
	t.Fatalf("moto_server: %v", last)
	return nil
}

func start(path string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(path, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.exited = exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("moto_server exited before it answered on port %d", port)
		default:
		}
		if ours, err := listensOn(cmd.Process.Pid, port); err == nil && ours {
			resp, err := http.Get(s.URL + "/moto-api/")
			if err == nil {
				resp.Body.Close()
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("moto_server did not listen on %s within 30s", s.URL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listensOn reports whether process pid holds the socket listening on
// 127.0.0.1:port (Linux: the socket's inode in /proc/net/tcp is one of the
// process's file descriptors).
func listensOn(pid, port int) (bool, error) {
	table, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false, err
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	inode := ""
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[3] == "0A" {
			inode = f[9]
		}
	}
	if inode == "" {
		return false, nil
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false, err
	}
	want := "socket:[" + inode + "]"
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && target == want {
			return true, nil
		}
	}
	return false, nil
}

func (s *Server) stop() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// Reset drops every resource moto holds.
func (s *Server) Reset(t testing.TB) {
	t.Helper()
	resp, err := http.Post(s.URL+"/moto-api/reset", "application/json", nil)
	if err != nil {
		t.Fatalf("moto reset: %v", err)
	}
	resp.Body.Close()
}

// Config is an SDK configuration for the server: fixed test credentials,
// us-east-1, the server as every service's endpoint.
func (s *Server) Config(t testing.TB) sdkaws.Config {
	t.Helper()
	c, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")),
		config.WithBaseEndpoint(s.URL),
	)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
