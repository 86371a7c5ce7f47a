#!/usr/bin/env bash
# The whole test suite: installs what the integration tests need (ZooKeeper
# from Debian, an etcd built from the etcd Go modules), then runs every test
# under the race detector. Tests start their own registries on free loopback
# ports; under CI=true a missing registry fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

need_zk() { [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1; }
if ! need_zk; then
  echo "== installing ZooKeeper (Debian package zookeeper)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends zookeeper >/dev/null
fi
need_zk || { echo "ZooKeeper is still missing after install" >&2; exit 1; }

echo "== building etcd and gatehouse"
mkdir -p .bin
go build -o .bin/etcd ./internal/cmd/etcd
go build -o .bin/gatehouse ./cmd/gatehouse
export GATEHOUSE_ETCD_BIN="$PWD/.bin/etcd"
export GATEHOUSE_BIN="$PWD/.bin/gatehouse"

echo "== gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "not gofmt'ed:"; echo "$unformatted"; exit 1; fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 25m "$@" ./...
