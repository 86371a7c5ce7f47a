package regurl

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Spec
		err  bool
	}{
		{"embedded", Spec{Kind: Embedded}, false},
		{"etcd://127.0.0.1:2379", Spec{Kind: Etcd, Servers: []string{"127.0.0.1:2379"}}, false},
		{"etcd://a:1,b:2", Spec{Kind: Etcd, Servers: []string{"a:1", "b:2"}}, false},
		{"zk://a:2181,b:2181/prod", Spec{Kind: ZK, Servers: []string{"a:2181", "b:2181"}, Chroot: "/prod"}, false},
		{"zk://a:2181", Spec{Kind: ZK, Servers: []string{"a:2181"}}, false},
		{"etcd://a:1/x", Spec{}, true},
		{"consul://a:1", Spec{}, true},
		{"etcd://a", Spec{}, true},
		{"127.0.0.1:2379", Spec{}, true},
		{"", Spec{}, true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := Parse(c.in)
			if (err != nil) != c.err {
				t.Fatalf("got error %v, want error %v", err, c.err)
			}
			if !c.err && !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}
