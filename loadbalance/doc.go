// Package loadbalance picks an instance of a service for each request.
// A Balancer receives membership as discovery snapshots (Update, serialized)
// and builds an immutable picker that Pick reads through an atomic pointer,
// without locks or allocations. Request outcomes reported to Endpoint.Done
// feed passive health (outlier ejection, effective weights); health and slow
// start reach the pickers through rebuilds on transitions only, so a healthy
// pick costs one extra atomic load and never reads the clock.
package loadbalance
