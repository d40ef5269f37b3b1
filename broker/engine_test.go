package broker_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
)

// A data directory keeps the storage engine it was created with: a broker
// started on it with the other engine is refused with a message naming the
// flag to use, and changes nothing; with its own engine it serves its data.
// The journal engine's work and memory are on /metrics.
func TestStorageEngineKeptByDataDir(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithEngine(broker.EngineJournal))
	c := dial(t, b.Addr())
	createTopic(t, c, "kept", 1)
	for i := range 20 {
		if off := produce(t, c, "kept", 0, "v"+strconv.Itoa(i)); off != int64(i) {
			t.Fatalf("record %d at offset %d", i, off)
		}
	}
	fsyncs := metric(t, b.HTTPAddr(), "skein_journal_fsyncs_total ")
	if n, _ := strconv.ParseFloat(strings.Fields(fsyncs + " x 0")[1], 64); n < 1 {
		t.Fatalf("journal fsyncs on /metrics: %q", fsyncs)
	}
	for _, m := range []string{`skein_storage_memory_budget_bytes{part="journal_tail"} `, `skein_storage_memory_used_bytes{part="journal_pending"} `, "skein_journal_records_per_fsync "} {
		if metric(t, b.HTTPAddr(), m) == "" {
			t.Fatalf("no %s on /metrics", m)
		}
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	before := dirListing(t, b.Dir)

	cfg := broker.DefaultConfig()
	cfg.DataDir, cfg.StorageEngine = b.Dir, broker.EngineWAL
	cfg.Addr, cfg.HTTPAddr, cfg.KafkaAddr = "127.0.0.1:0", "", ""
	cfg.GossipAddr, cfg.RaftAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if nb, err := broker.New(cfg); err == nil {
		nb.Close()
		t.Fatal("a journal data directory opened with the wal engine")
	} else if !strings.Contains(err.Error(), "--storage-engine journal") {
		t.Fatalf("the refusal does not say which engine to use: %v", err)
	}
	if after := dirListing(t, b.Dir); after != before {
		t.Fatalf("the refused start changed the data directory:\n%s\n---\n%s", before, after)
	}

	b2 := brokertest.Start(t, brokertest.WithDataDir(b.Dir), brokertest.WithEngine(broker.EngineJournal))
	c = dial(t, b2.Addr())
	if recs := fetchAll(t, c, "kept", 0, 0); len(recs) != 20 || string(recs[19].Value) != "v19" {
		t.Fatalf("after the restart: %d records", len(recs))
	}
}

// dirListing lists every file under dir with its size.
func dirListing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && filepath.Base(p) != ".lock" {
			b.WriteString(p + " " + strconv.FormatInt(fi.Size(), 10) + "\n")
		}
		return nil
	})
	return b.String()
}
