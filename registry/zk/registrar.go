package zk

import (
	"context"
	"errors"
	"fmt"
	"strings"

	gozk "github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
)

// maxAttempts bounds the retries of a write that races with another writer
// or with a node vanishing.
const maxAttempts = 5

var openACL = gozk.WorldACL(gozk.PermAll)

// Register writes inst as an ephemeral znode owned by this client's session.
// A node already there is updated if this session owns it; a node owned by
// any other session (such as this process's own expired one, which the
// server has not yet removed) is replaced. lost closes when the owning
// session ends.
func (c *Client) Register(ctx context.Context, inst registry.Instance) (<-chan struct{}, error) {
	data, err := registry.Encode(inst)
	if err != nil {
		return nil, err
	}
	path := c.layout.Key(inst.Service, inst.ID)
	for range maxAttempts {
		id, gen := c.current()
		_, err := call(ctx, c, func() (string, error) {
			return c.conn.Create(path, data, gozk.FlagEphemeral, openACL)
		})
		switch {
		case err == nil:
			return c.createdLost(ctx, path, id, gen)
		case errors.Is(err, gozk.ErrNoNode):
			if err := c.ensure(ctx, c.layout.ServicePath(inst.Service)); err != nil {
				return nil, err
			}
		case errors.Is(err, gozk.ErrNodeExists):
			owner, done, err := c.replace(ctx, path, data)
			if err != nil {
				return nil, fmt.Errorf("zookeeper: register %s: %w", path, err)
			}
			if done {
				return c.lostFor(owner), nil
			}
		default:
			return nil, fmt.Errorf("zookeeper: register %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("zookeeper: register %s: still racing after %d attempts", path, maxAttempts)
}

// createdLost finds the session that owns a node we just created. If no
// session change happened around the create, it is the session from before.
func (c *Client) createdLost(ctx context.Context, path string, id int64, gen uint64) (<-chan struct{}, error) {
	if id2, gen2 := c.current(); id != 0 && id2 == id && gen2 == gen {
		return c.lostFor(id), nil
	}
	st, err := c.stat(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: register %s: %w", path, err)
	}
	if st == nil { // already gone with its session
		return c.lostFor(0), nil
	}
	return c.lostFor(st.EphemeralOwner), nil
}

// replace updates the node at path if this session owns it, or deletes it
// if not. done reports that our record is in place; !done means try to
// create it again.
func (c *Client) replace(ctx context.Context, path string, data []byte) (owner int64, done bool, err error) {
	st, err := c.stat(ctx, path)
	if err != nil || st == nil {
		return 0, false, err
	}
	if st.EphemeralOwner != 0 && st.EphemeralOwner == c.conn.SessionID() {
		_, err := call(ctx, c, func() (*gozk.Stat, error) { return c.conn.Set(path, data, st.Version) })
		if errors.Is(err, gozk.ErrNoNode) || errors.Is(err, gozk.ErrBadVersion) {
			return 0, false, nil
		}
		return st.EphemeralOwner, err == nil, err
	}
	c.log.Info("replacing registry record of another session",
		zap.String("path", path), zap.String("owner", fmt.Sprintf("%#x", st.EphemeralOwner)))
	err = c.delete(ctx, path, st.Version)
	if errors.Is(err, gozk.ErrNoNode) || errors.Is(err, gozk.ErrBadVersion) {
		err = nil
	}
	return 0, false, err
}

// Deregister deletes inst's record if this session owns it. A missing
// record, or one owned by another session, is left alone and is not an error.
func (c *Client) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := registry.ValidateName(inst.Service); err != nil {
		return fmt.Errorf("%w: service: %v", registry.ErrInvalid, err)
	}
	if err := registry.ValidateName(inst.ID); err != nil {
		return fmt.Errorf("%w: id: %v", registry.ErrInvalid, err)
	}
	path := c.layout.Key(inst.Service, inst.ID)
	for range maxAttempts {
		st, err := c.stat(ctx, path)
		if err != nil {
			return fmt.Errorf("zookeeper: deregister %s: %w", path, err)
		}
		if st == nil || st.EphemeralOwner == 0 || st.EphemeralOwner != c.conn.SessionID() {
			return nil
		}
		err = c.delete(ctx, path, st.Version)
		switch {
		case err == nil, errors.Is(err, gozk.ErrNoNode):
			return nil
		case !errors.Is(err, gozk.ErrBadVersion):
			return fmt.Errorf("zookeeper: deregister %s: %w", path, err)
		}
	}
	return fmt.Errorf("zookeeper: deregister %s: still racing after %d attempts", path, maxAttempts)
}

// stat returns the node's Stat, or nil if it does not exist.
func (c *Client) stat(ctx context.Context, path string) (*gozk.Stat, error) {
	return call(ctx, c, func() (*gozk.Stat, error) {
		ok, st, err := c.conn.Exists(path)
		if err != nil || !ok {
			return nil, err
		}
		return st, nil
	})
}

func (c *Client) delete(ctx context.Context, path string, version int32) error {
	_, err := call(ctx, c, func() (struct{}, error) { return struct{}{}, c.conn.Delete(path, version) })
	return err
}

// ensure creates path and its missing ancestors as empty persistent nodes.
func (c *Client) ensure(ctx context.Context, path string) error {
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			continue
		}
		p := path[:i]
		_, err := call(ctx, c, func() (string, error) { return c.conn.Create(p, nil, gozk.FlagPersistent, openACL) })
		if err != nil && !errors.Is(err, gozk.ErrNodeExists) {
			return fmt.Errorf("zookeeper: create %s: %w", p, err)
		}
	}
	return nil
}

// under reports whether path is root or below it.
func under(path, root string) bool {
	return path == root || strings.HasPrefix(path, root+"/")
}
