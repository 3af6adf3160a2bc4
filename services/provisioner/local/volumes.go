package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Volume is one slot's volume of a stateful service, on disk.
type Volume struct {
	Slot  string `json:"slot"`
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// ErrVolumesInUse: the service still has groups on this provider, whose
// instances hold (or would reopen) its volumes.
var ErrVolumesInUse = errors.New("volumes in use")

// Volumes lists a stateful service's volumes under cfg (its VolumesDir,
// or <Dir>/../volumes), by slot.
func Volumes(cfg Config, service string) ([]Volume, error) {
	root := filepath.Join(cfg.volumesRoot(), service)
	dirs, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local: volumes of %s: %w", service, err)
	}
	var out []Volume
	for _, d := range dirs {
		if !d.IsDir() || !strings.HasPrefix(d.Name(), service+"-") {
			continue
		}
		v := Volume{Slot: d.Name(), Path: filepath.Join(root, d.Name())}
		_ = filepath.WalkDir(v.Path, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if info, err := e.Info(); err == nil {
					v.Bytes += info.Size()
				}
			}
			return nil
		})
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out, nil
}

// DestroyVolumes deletes every volume of a stateful service: its data is
// gone for good. It refuses (ErrVolumesInUse) while any group of the
// service is recorded by the provider (a release's group, or one left
// running): destroy those first. No release ever calls it; it is the
// operator's explicit command (redblack volume destroy).
func DestroyVolumes(cfg Config, service string) ([]Volume, error) {
	files, _ := filepath.Glob(filepath.Join(cfg.Dir, "groups", "*.json"))
	var groups []string
	for _, f := range files {
		var rec groupRecord
		b, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(b, &rec) != nil {
			continue
		}
		if rec.Spec.Service == service {
			groups = append(groups, rec.Spec.Group)
		}
	}
	if len(groups) > 0 {
		sort.Strings(groups)
		return nil, fmt.Errorf("local: %w: %s still has groups %s: destroy them first (redblack fleet destroy GROUP)", ErrVolumesInUse, service, strings.Join(groups, ", "))
	}
	vols, err := Volumes(cfg, service)
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		if err := os.RemoveAll(v.Path); err != nil {
			return nil, fmt.Errorf("local: destroy %s: %w", v.Slot, err)
		}
	}
	return vols, nil
}
