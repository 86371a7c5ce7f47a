package etcd

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
)

// lease is one registration: the lease its record is bound to and the
// keep-alive that renews it.
type lease struct {
	id     clientv3.LeaseID
	stop   context.CancelFunc // ends the keep-alive
	lostCh chan struct{}      // closed when the keep-alive channel closes
}

// Register writes inst under its own lease, so that deregistering or losing
// one instance never touches another, and keeps the lease alive until
// Deregister or Close. The returned channel closes when the keep-alive ends:
// the lease expired or was revoked, etcd did not answer within the TTL, or
// the instance was deregistered or registered again. Registering an instance
// again replaces its record and revokes the previous lease.
//
// Register and Deregister must not run concurrently for the same instance.
func (c *Client) Register(ctx context.Context, inst registry.Instance) (<-chan struct{}, error) {
	val, err := registry.Encode(inst)
	if err != nil {
		return nil, err
	}
	key := c.layout.Key(inst.Service, inst.ID)
	if c.isClosed() {
		return nil, ErrClosed
	}
	rctx, cancel := c.request(ctx)
	defer cancel()
	g, err := c.cli.Grant(rctx, c.ttl)
	if err != nil {
		return nil, fmt.Errorf("etcd registry: grant lease for %s: %w", key, err)
	}
	if _, err := c.cli.Put(rctx, key, string(val), clientv3.WithLease(g.ID)); err != nil {
		c.revoke(ctx, g.ID)
		return nil, fmt.Errorf("etcd registry: put %s: %w", key, err)
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.revoke(ctx, g.ID)
		return nil, ErrClosed
	}
	c.wg.Add(1)
	c.mu.Unlock()

	// The keep-alive outlives this call: it derives from the client, not ctx.
	kctx, stop := context.WithCancel(c.ctx)
	ch, err := c.cli.KeepAlive(kctx, g.ID)
	if err != nil {
		stop()
		c.wg.Done()
		c.revoke(ctx, g.ID)
		return nil, fmt.Errorf("etcd registry: keep lease of %s alive: %w", key, err)
	}
	l := &lease{id: g.ID, stop: stop, lostCh: make(chan struct{})}
	go func() {
		defer c.wg.Done()
		defer close(l.lostCh)
		for range ch { // drained so that clientv3 never finds the channel full
		}
		if kctx.Err() == nil {
			c.log.Warn("etcd lease lost", zap.String("key", key), zap.Int64("lease", int64(l.id)))
		}
	}()

	c.mu.Lock()
	old := c.regs[key]
	c.regs[key] = l
	c.mu.Unlock()
	if old != nil {
		old.stop()
		// The record is bound to the new lease now: revoking removes nothing.
		c.revoke(ctx, old.id)
	}
	return l.lostCh, nil
}

// Deregister removes inst's record by revoking the lease this client
// registered it with. Revoking deletes exactly the keys bound to that lease,
// so a record since rewritten by another registrar is left alone. A missing
// registration or an already expired lease is not an error.
func (c *Client) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := registry.ValidateName(inst.Service); err != nil {
		return fmt.Errorf("%w: service: %v", registry.ErrInvalid, err)
	}
	if err := registry.ValidateName(inst.ID); err != nil {
		return fmt.Errorf("%w: id: %v", registry.ErrInvalid, err)
	}
	key := c.layout.Key(inst.Service, inst.ID)
	c.mu.Lock()
	l, closed := c.regs[key], c.closed
	c.mu.Unlock()
	if l == nil {
		return nil
	}
	if closed {
		return ErrClosed
	}
	l.stop()
	rctx, cancel := c.request(ctx)
	defer cancel()
	if _, err := c.cli.Revoke(rctx, l.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// Kept in regs so that a retry revokes it.
		return fmt.Errorf("etcd registry: revoke lease of %s: %w", key, err)
	}
	c.mu.Lock()
	if c.regs[key] == l {
		delete(c.regs, key)
	}
	c.mu.Unlock()
	return nil
}

// revoke is a best-effort cleanup after a failed or superseded registration;
// an unrevoked lease only expires later.
func (c *Client) revoke(ctx context.Context, id clientv3.LeaseID) {
	rctx, cancel := c.request(context.WithoutCancel(ctx))
	defer cancel()
	if _, err := c.cli.Revoke(rctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		c.log.Warn("etcd lease not revoked; it expires after its TTL",
			zap.Int64("lease", int64(id)), zap.Error(err))
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
