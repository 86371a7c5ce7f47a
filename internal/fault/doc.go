// Package fault holds the fault tests of issue 4: real gatehouse processes
// (gateway, echo backends, sidecars) on real etcd clusters and ZooKeeper
// ensembles, a load loop sending GET and POST through the gateway
// throughout, and one fault per test. Each test counts failed requests by
// kind and asserts the bound the issue promises:
//
//   - rolling restart of the backends through their sidecars: 0 GET, 0 POST;
//   - a backend killed with SIGKILL: 0 GET (connect failures and idempotent
//     requests are retried on another instance); POST at most
//     killedPOSTBound, the requests already sent to the killed process;
//   - etcd leader, follower and whole-cluster loss: 0 failures;
//   - ZooKeeper leader and whole-ensemble loss, forced session expiry of the
//     gateway and of a sidecar: 0 failures;
//   - the gateway restarted with the registry down: it serves from its
//     snapshot file, 0 failures;
//   - a malformed record beside good ones: 0 failures;
//   - one update removing 80% of a service's instances: the panic floor
//     holds it for the confirm delay, 0 failures.
//
// The package has no code of its own; everything is in its tests, which
// need GATEHOUSE_BIN (or a Go toolchain to build it), an etcd binary
// (GATEHOUSE_ETCD_BIN or a Go toolchain) and Java with Debian's ZooKeeper.
package fault
