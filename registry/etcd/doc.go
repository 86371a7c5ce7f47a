// Package etcd is the etcd backend of the registry: a Client that holds
// instance records as keys bound to leases kept alive in the background, and
// a Watcher that lists every service under the root at one revision and
// follows it with a single prefix watch from the next revision.
//
// It also runs an embedded etcd member (StartEmbedded) for single-node
// development setups.
package etcd
