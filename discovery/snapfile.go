package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
)

// snapshotFile is the on-disk routing state.
type snapshotFile struct {
	Version   int                            `json:"version"`
	WrittenAt time.Time                      `json:"written_at"`
	Services  map[string][]registry.Instance `json:"services"`
}

const snapshotFileVersion = 1

// minSaveInterval bounds how often the file is rewritten (and fsynced)
// under a burst of changes; the last change is always written.
const minSaveInterval = 200 * time.Millisecond

// saver writes the routing state in the background, latest wins.
type saver struct {
	path string
	log  *zap.Logger

	mu    sync.Mutex // guards dirty, read
	dirty bool
	read  func() map[string][]registry.Instance
	wake  chan struct{}
}

func newSaver(path string, log *zap.Logger) *saver {
	return &saver{path: path, log: log, wake: make(chan struct{}, 1)}
}

// changed marks the state dirty; the writer calls read later, outside the
// caller's lock, to copy the state.
func (w *saver) changed(read func() map[string][]registry.Instance) {
	w.mu.Lock()
	w.dirty, w.read = true, read
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *saver) run(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			w.flush()
			return
		case <-w.wake:
		}
		if wait := minSaveInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				w.flush()
				return
			case <-t.C:
			}
		}
		w.flush()
		last = time.Now()
	}
}

func (w *saver) flush() {
	w.mu.Lock()
	dirty, read := w.dirty, w.read
	w.dirty = false
	w.mu.Unlock()
	if !dirty {
		return
	}
	if err := writeSnapshotFile(w.path, read()); err != nil {
		w.log.Error("could not write the routing snapshot file", zap.String("path", w.path), zap.Error(err))
	}
}

// copySets copies the published, non-empty sets.
func (s *Subject) copySets() map[string][]registry.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]registry.Instance, len(s.services))
	for name, st := range s.services {
		if len(st.snap.Instances) > 0 {
			out[name] = st.snap.Instances
		}
	}
	return out
}

// writeSnapshotFile writes atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory.
func writeSnapshotFile(path string, svcs map[string][]registry.Instance) error {
	data, err := json.Marshal(snapshotFile{Version: snapshotFileVersion, WrittenAt: time.Now().UTC(), Services: svcs})
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// readSnapshotFile loads the file, dropping invalid records.
func readSnapshotFile(path string) (map[string][]registry.Instance, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var f snapshotFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, 0, fmt.Errorf("corrupt snapshot file: %w", err)
	}
	if f.Version != snapshotFileVersion {
		return nil, 0, fmt.Errorf("snapshot file version %d not supported", f.Version)
	}
	dropped := 0
	out := make(map[string][]registry.Instance, len(f.Services))
	for name, ins := range f.Services {
		for _, in := range ins {
			if in.Service != name || in.Validate() != nil {
				dropped++
				continue
			}
			out[name] = append(out[name], in)
		}
	}
	return out, dropped, nil
}

// restore seeds the Subject from the snapshot file, if there is one.
func (s *Subject) restore() {
	svcs, dropped, err := readSnapshotFile(s.opts.SnapshotPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.log.Info("no routing snapshot file yet; starting empty", zap.String("path", s.opts.SnapshotPath))
		return
	case err != nil:
		s.log.Error("routing snapshot file unreadable; starting empty", zap.String("path", s.opts.SnapshotPath), zap.Error(err))
		return
	}
	if dropped > 0 {
		s.log.Warn("routing snapshot file: invalid records dropped", zap.Int("dropped", dropped))
	}
	if len(svcs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ins := range svcs {
		registry.SortByID(ins)
		st, _ := s.stateLocked(name)
		st.restored = true
		st.snap = Snapshot{Service: name, Instances: ins, Version: 1}
	}
	now := time.Now()
	s.status = Status{State: Stale, StaleSince: now, Restored: true}
	s.armExpiryLocked()
	s.log.Info("routing state restored from the snapshot file; the registry will replace it once reachable",
		zap.Int("services", len(svcs)))
}
