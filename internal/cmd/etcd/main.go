// Command etcd is a full etcd server built from the etcd modules this
// repository already depends on, so that tests can run members as separate
// processes and kill them.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
