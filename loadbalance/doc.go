// Package loadbalance picks an instance of a service for each request.
// A Balancer receives membership as discovery snapshots (Update, serialized)
// and builds an immutable picker that Pick reads through an atomic pointer,
// without locks or allocations.
package loadbalance
