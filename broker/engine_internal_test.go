package broker

import (
	"strings"
	"testing"
)

func TestDecideEngine(t *testing.T) {
	for _, tc := range []struct {
		recorded, configured string
		hasParts             bool
		want, err            string
	}{
		{"", EngineWAL, false, EngineWAL, ""},
		{"", EngineJournal, false, EngineJournal, ""},
		{"", EngineWAL, true, EngineWAL, ""},
		{"", EngineJournal, true, "", "written by the \"wal\" storage engine: start with --storage-engine wal"},
		{EngineJournal, EngineJournal, true, EngineJournal, ""},
		{EngineJournal, EngineWAL, false, "", "start with --storage-engine journal"},
		{EngineWAL, EngineJournal, false, "", "start with --storage-engine wal"},
	} {
		got, err := decideEngine(tc.recorded, tc.configured, tc.hasParts)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("decideEngine(%q, %q, %v) = %q, %v; want %q, %q", tc.recorded, tc.configured, tc.hasParts, got, err, tc.want, tc.err)
		}
	}
}
