package kafka

import "testing"

// TestEveryAPIHasAHook fails when an API is served without an
// authorization hook (with ACLs on, the listener would close the
// connection of every client that sends it).
func TestEveryAPIHasAHook(t *testing.T) {
	for key := range supported {
		if _, ok := authzHooks[key]; !ok {
			t.Errorf("API %d is served but has no entry in authzHooks", key)
		}
	}
}
