package registry

import (
	"encoding/json"
	"fmt"
)

// SchemaVersion is written into every record; readers accept versions up to it.
const SchemaVersion = 1

type record struct {
	V int `json:"v"`
	Instance
}

// Encode serializes a valid instance with the schema version.
func Encode(in Instance) ([]byte, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(record{V: SchemaVersion, Instance: in})
}

// Decode parses and validates a record. A record from a newer schema, or one
// that does not validate, is an error wrapping ErrInvalid: callers skip it.
func Decode(data []byte) (Instance, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return Instance{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if r.V < 1 || r.V > SchemaVersion {
		return Instance{}, fmt.Errorf("%w: schema version %d not supported (max %d)", ErrInvalid, r.V, SchemaVersion)
	}
	if err := r.Instance.Validate(); err != nil {
		return Instance{}, err
	}
	return r.Instance, nil
}

// DecodeAt decodes the record stored at key and checks that its service and
// ID agree with the key, so a record copied to the wrong place is refused.
func (l Layout) DecodeAt(key string, data []byte) (Instance, error) {
	service, id, err := l.Parse(key)
	if err != nil {
		return Instance{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	in, err := Decode(data)
	if err != nil {
		return Instance{}, fmt.Errorf("%s: %w", key, err)
	}
	if in.Service != service || in.ID != id {
		return Instance{}, fmt.Errorf("%s: %w: record names %s/%s", key, ErrInvalid, in.Service, in.ID)
	}
	return in, nil
}
