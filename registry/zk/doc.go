// Package zk keeps gatehouse's registry in ZooKeeper: a Client registers
// instances as ephemeral znodes at <root>/<service>/<id> and watches every
// service under the root, over one session shared by the whole process.
//
// ZooKeeper does not recreate ephemeral nodes after a session expires: the
// lost channel from Register closes then, and registry.Keep registers again.
// Watches are one-shot; the watcher re-arms each one as it reads it.
package zk
