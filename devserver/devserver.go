// Package devserver runs the Temporal CLI's dev server (`temporal server
// start-dev`) as a child process bound to this process's lifetime: the one
// machine default behind `lessonflow dev` and the integration tests.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
)

// Options configure a dev server.
type Options struct {
	CLI       string // path of the temporal binary
	Port      int    // gRPC port; 0 picks a free one
	UIPort    int    // Web UI port; 0 runs headless
	DBFile    string // SQLite file that persists state; empty keeps it in memory
	Namespace string
	// ExtraNamespaces are created at start too (tests isolate deployments by namespace).
	ExtraNamespaces []string
	Log             io.Writer // server output; nil discards it
}

// Server is a running dev server.
type Server struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	Address string // host:port of the frontend
	UIURL   string // empty when headless
}

// Start launches the server and waits until its frontend answers.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		o.Port = p
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("start temporal dev server: %s is already in use (another dev server? set TEMPORAL_ADDRESS to use it)", addr)
	}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(o.Port),
		"--namespace", o.Namespace, "--log-level", "warn",
		"--dynamic-config-value", "frontend.enableServerVersionCheck=false"}
	if o.UIPort > 0 {
		args = append(args, "--ui-port", strconv.Itoa(o.UIPort))
	} else {
		args = append(args, "--headless")
	}
	for _, ns := range o.ExtraNamespaces {
		args = append(args, "--namespace", ns)
	}
	if o.DBFile != "" {
		args = append(args, "--db-filename", o.DBFile)
	}
	cmd := exec.Command(o.CLI, args...)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	// The server must not outlive us, even when we are SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start temporal dev server (%s): %w", o.CLI, err)
	}
	s := &Server{cmd: cmd, done: make(chan struct{}), Address: addr}
	if o.UIPort > 0 {
		s.UIURL = fmt.Sprintf("http://127.0.0.1:%d", o.UIPort)
	}
	go func() { s.waitErr = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, o.Namespace); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, ns string) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last error
	for {
		c, err := client.Dial(client.Options{HostPort: s.Address, Namespace: ns, Logger: quietLogger{}})
		if err == nil {
			_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
			c.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-s.done:
			return fmt.Errorf("temporal dev server exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("temporal dev server not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop asks the server to shut down and waits for it.
func (s *Server) Stop() error {
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.Kill()
	}
	return nil
}

// Kill ends the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// quietLogger keeps the SDK's connection retries out of the output while waiting.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
