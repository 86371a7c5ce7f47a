package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
)

// echoReply is what the demo backend answers.
type echoReply struct {
	Name    string              `json:"name"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query,omitempty"`
	Host    string              `json:"host"`
	Remote  string              `json:"remote"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body,omitempty"`
}

func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		// ?sleep=D delays the answer, for trying timeouts and graceful drains.
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 {
			t := time.NewTimer(min(d, 30*time.Second))
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo-Name", name)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(echoReply{Name: name, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Host: r.Host, Remote: r.RemoteAddr, Headers: r.Header, Body: string(body)})
	})
}

// echoServer is a running demo backend.
type echoServer struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

func startEcho(listen, name string, log *zap.Logger) (*echoServer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", listen, err)
	}
	e := &echoServer{addr: ln.Addr().String(), done: make(chan struct{}),
		srv: &http.Server{Handler: echoHandler(name), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		defer close(e.done)
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("echo server failed", zap.Error(err))
		}
	}()
	return e, nil
}

func (e *echoServer) shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e.srv.Shutdown(ctx)
	<-e.done
}

func newEchoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "echo",
		Short: "Run a demo backend that answers with its name, the path and headers it received",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	addCommonFlags(fs)
	addInstanceFlags(fs)
	fs.String("listen", "127.0.0.1:9000", "address to serve on")
	fs.String("name", "", "name to answer with (default: host name and port)")
	fs.String("advertise", "", "URL to register (default: http:// and the listening address)")
	fs.Duration("drain", time.Second, "on SIGTERM, how long to keep serving after deregistering when the gateways cannot confirm")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, log, err := bindWithLogger(fs)
		if err != nil {
			return err
		}
		defer log.Sync()
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		name := s.v.GetString("name")
		if name == "" {
			host, _ := os.Hostname()
			name = host + "-" + s.v.GetString("listen")
		}
		e, err := startEcho(s.v.GetString("listen"), name, log)
		if err != nil {
			return err
		}
		log.Info("echo listening", zap.String("addr", e.addr), zap.String("name", name))
		var k *keeper
		var in registry.Instance
		if s.v.GetString("registry") != "" {
			addr := s.v.GetString("advertise")
			if addr == "" {
				addr = "http://" + e.addr
			}
			in, err = instanceFromSettings(s, addr)
			if err != nil {
				return err
			}
			backend, err := openRegistry(ctx, s, log)
			if err != nil {
				return err
			}
			defer backend.Close()
			k = startKeeper(ctx, backend, in, s.v.GetDuration("ttl"), log)
		}
		<-ctx.Done()
		if k != nil {
			deregisterAndDrain(s, k, in, log)
		}
		e.shutdown(10 * time.Second)
		log.Info("echo stopped")
		return nil
	}
	return cmd
}
