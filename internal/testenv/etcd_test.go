package testenv

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdServer is what both kinds of test member offer.
type etcdServer interface {
	Stop()
	Start()
}

func TestEtcdRestartKeepsData(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T) (endpoint string, s etcdServer, kill func())
	}{
		{"embedded", func(t *testing.T) (string, etcdServer, func()) {
			e := StartEtcd(t)
			return e.Endpoint, e, e.Stop
		}},
		{"process", func(t *testing.T) (string, etcdServer, func()) {
			if testing.Short() {
				t.Skip("builds an etcd binary")
			}
			p := StartEtcdProcess(t, BuildEtcdBinary(t))
			if p.PID() == 0 {
				t.Fatalf("got pid 0 for a running process")
			}
			return p.Endpoint, p, p.Kill
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			endpoint, s, kill := tc.start(t)
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := cli.Put(ctx, "/k", "v"); err != nil {
				t.Fatalf("put: %v", err)
			}

			kill()
			short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = cli.Get(short, "/k")
			cancelShort()
			if err == nil {
				t.Fatalf("got a read from a stopped server, want an error")
			}

			s.Start()
			resp, err := cli.Get(ctx, "/k")
			if err != nil {
				t.Fatalf("get after restart: %v", err)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
				t.Fatalf("got %v after restart, want /k=v", resp.Kvs)
			}
			s.Stop() // graceful path; the cleanup then finds nothing to do
		})
	}
}
