package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/gateway"
	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/registry"
	"github.com/spf13/cobra"
)

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Embedded registry, the gateway on :8080 and three echo backends as service echo",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.String("listen", ":8080", "gateway address")
	fs.String("admin", "127.0.0.1:9901", "admin address")
	fs.String("registry-addr", "127.0.0.1:2379", "client address of the embedded registry")
	fs.String("peer-addr", "127.0.0.1:2380", "peer address of the embedded registry")
	fs.String("log-level", "warn", "log level")
	fs.Bool("access-log", false, "log one line per request")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		get := func(n string) string { v, _ := fs.GetString(n); return v }
		accessLog, _ := fs.GetBool("access-log")
		log, err := newLogger(get("log-level"), "console")
		if err != nil {
			return err
		}
		defer log.Sync()
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		cfg := gatewayConfig{
			Listen: get("listen"), Admin: get("admin"), Registry: regurl.Embedded,
			RegistryRoot: registry.DefaultRoot, RegistryTTL: 5 * time.Second,
			Embedded:  embeddedConfig{ClientAddr: get("registry-addr"), PeerAddr: get("peer-addr")},
			AccessLog: accessLog, DiscoveryRoutes: true, DefaultPolicy: "round_robin",
			ShutdownTimeout: 5 * time.Second, GatewaysRoot: DefaultGatewaysRoot, PanicFloor: 0.5,
			Server: gateway.ServerFastHTTP, Engine: gateway.EngineLean,
		}
		if err := cfg.validate(); err != nil {
			return err
		}
		started := make(chan runningGateway, 1)
		gwDone := make(chan error, 1)
		go func() { gwDone <- runGateway(ctx, cfg, log, nil, func(r runningGateway) { started <- r }) }()
		var info runningGateway
		select {
		case err := <-gwDone:
			return err
		case info = <-started:
		}
		backend, err := regurl.Open(ctx, regurl.Spec{Kind: regurl.Etcd, Servers: []string{get("registry-addr")}},
			regurl.Options{TTL: 5 * time.Second, Logger: log.Named("registry")})
		if err != nil {
			stop()
			<-gwDone
			return err
		}
		defer backend.Close()
		var keepers []*keeper
		var echos []*echoServer
		for _, name := range []string{"echo-1", "echo-2", "echo-3"} {
			e, err := startEcho("127.0.0.1:0", name, log)
			if err != nil {
				stop()
				<-gwDone
				return err
			}
			echos = append(echos, e)
			in := registry.Instance{Service: "echo", ID: name, Address: "http://" + e.addr, Weight: 1,
				Metadata: map[string]string{registry.MetaVersion: "demo"}}
			keepers = append(keepers, startKeeper(ctx, backend, in, 5*time.Second, log))
		}
		fmt.Fprintf(os.Stdout, `Gatehouse demo is running.
  gateway   http://%[1]s
  admin     http://%[2]s  (/healthz, /readyz, /admin/services)
  registry  %[3]s  (embedded etcd; register more backends here)

Try:
  curl localhost:%[4]s/echo/hello          # answered by echo-1, echo-2, echo-3 in turn
  curl %[2]s/admin/services
  go run ./cmd/gatehouse services --registry %[3]s
  go run ./cmd/gatehouse echo --listen 127.0.0.1:9100 --name mine --registry %[3]s --service echo
Ctrl-C stops everything.
`, "localhost:"+portOf(info.Addr), info.AdminAddr, info.RegistryEndpoint, portOf(info.Addr))
		err = <-gwDone
		for _, k := range keepers {
			k.stop()
		}
		for _, e := range echos {
			e.shutdown(2 * time.Second)
		}
		return err
	}
	return cmd
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}
