package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// newRawEcho is a backend that accepts any Upgrade: websocket request with
// 101 and then echoes raw bytes: enough to prove the tunnel, no framing.
func newRawEcho(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("backend hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestWebSocketUpgrade(t *testing.T) {
	backend := newRawEcho(t)
	for _, accessLog := range []bool{false, true} {
		name := map[bool]string{false: "access log off", true: "access log on"}[accessLog]
		t.Run(name, func(t *testing.T) {
			src := newFakeSource()
			src.set("ws", inst("ws", "w1", backend.URL))
			core, logs := observer.New(zapcore.InfoLevel)
			h := newHarness(t, Config{DiscoveryRoutes: true, AccessLog: accessLog}, src, zap.New(core))

			conn, err := net.Dial("tcp", strings.TrimPrefix(h.front.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = io.WriteString(conn, "GET /ws/chat HTTP/1.1\r\nHost: gw\r\n"+
				"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading upgrade response: %v", err)
			}
			if res.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status: got %d, want 101", res.StatusCode)
			}
			if got := res.Header.Get("Upgrade"); !strings.EqualFold(got, "websocket") {
				t.Errorf("Upgrade header: got %q, want websocket", got)
			}
			for _, msg := range []string{"hello", "second message", strings.Repeat("x", 4000)} {
				if _, err := io.WriteString(conn, msg); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(br, got); err != nil {
					t.Fatalf("reading echo of %d bytes: %v", len(msg), err)
				}
				if string(got) != msg {
					t.Errorf("echo: got %q, want %q", got, msg)
				}
			}
			conn.Close()
			if accessLog {
				eventually(t, "the access log line", func() bool { return logs.FilterMessage("access").Len() == 1 })
				if got := logs.FilterMessage("access").All()[0].ContextMap()["status"]; got != int64(101) {
					t.Errorf("logged status: got %v, want 101", got)
				}
			}
		})
	}
}
