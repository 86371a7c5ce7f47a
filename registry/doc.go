// Package registry defines what a backend writes into a service registry and
// how: the Instance record, its key layout and versioned JSON codec, the
// Registrar that holds an ephemeral record, and Keep, the loop that puts the
// record back after the session or lease behind it is lost.
//
// It imports only the standard library; the drivers live in registry/zk and
// registry/etcd.
package registry
