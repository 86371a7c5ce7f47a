// Package scale holds the discovery-at-scale benchmark: 1,000 services of 10
// instances each in a real etcd and a real ZooKeeper, a gateway process
// following them, and the time one change takes to reach its balancer.
//
//	go test -run '^$' -bench Scale -benchtime 1x ./internal/scale/
package scale
