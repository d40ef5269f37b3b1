package cluster

import (
	"errors"
	"testing"
)

func TestResolveConfigInternal(t *testing.T) {
	d := DefaultDefaults()
	if _, err := ResolveConfig(TopicSpec{Name: "__consumer_offsets", Internal: true}, d, 1); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []TopicSpec{
		{Name: "__consumer_offsets"},     // a client may not
		{Name: "plain", Internal: true},  // internal names start with __
		{Name: "__../x", Internal: true}, // and are valid after it
		{Name: "__", Internal: true},
	} {
		if _, err := ResolveConfig(spec, d, 1); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("%+v: %v, want ErrInvalidTopic", spec, err)
		}
	}
}
