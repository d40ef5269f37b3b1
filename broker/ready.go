package broker

import (
	"fmt"
	"net/http"
	"strings"
)

// readyInputs is what readiness is decided from, read at each /readyz.
type readyInputs struct {
	started bool // joined the cluster and opened the partitions
	closing bool
	// Open file handles and their limit; known false off Linux.
	handlesKnown bool
	open, limit  int
	// Free bytes on the data directory's file system and the least the
	// broker needs; known false where it cannot tell.
	diskKnown         bool
	diskFree, diskMin uint64
	inflightUsed      int64
	inflightTotal     int64
	controller        int32 // -1: none known
}

// notReadyReasons says why a broker cannot accept work, or nothing. Pure.
func notReadyReasons(in readyInputs) []string {
	switch {
	case in.closing:
		return []string{"shutting down"}
	case !in.started:
		return []string{"starting: joining the cluster and opening partitions"}
	}
	var why []string
	if in.handlesKnown && in.open >= in.limit-handleReserve(in.limit)/2 {
		why = append(why, fmt.Sprintf("file handles nearly exhausted: %d open of a limit of %d (raise ulimit -n / LimitNOFILE or move partitions away)", in.open, in.limit))
	}
	if in.diskKnown && in.diskFree < in.diskMin {
		why = append(why, fmt.Sprintf("data directory disk nearly full: %d bytes free, at least %d needed (free space or lower retention)", in.diskFree, in.diskMin))
	}
	if in.inflightTotal > 0 && in.inflightUsed >= in.inflightTotal {
		why = append(why, fmt.Sprintf("in-flight data budget used up: %d of %d bytes (--max-inflight-bytes)", in.inflightUsed, in.inflightTotal))
	}
	if in.controller < 0 {
		why = append(why, "no controller reachable: the controller quorum has no leader this broker can see")
	}
	return why
}

// minFreeDisk is the free space the data directory needs to take writes:
// two segments' worth, at least 64 MiB.
func (b *Broker) minFreeDisk() uint64 {
	return uint64(max(2*b.cfg.SegmentBytes, 64<<20))
}

func (b *Broker) readyInputs() readyInputs {
	in := readyInputs{started: b.Ready(), closing: b.closing(), controller: b.ctrl.ControllerID(),
		inflightUsed: b.inflight.inUse(), inflightTotal: b.inflight.total, diskMin: b.minFreeDisk()}
	in.open, in.limit, in.handlesKnown = b.handles()
	in.diskFree, in.diskKnown = b.cfg.DiskFree(b.cfg.DataDir)
	return in
}

// serveReadyz answers 200 "ready" or 503 with every reason the broker
// cannot accept work, one a line; it recovers as soon as they pass.
func (b *Broker) serveReadyz(w http.ResponseWriter, r *http.Request) {
	why := notReadyReasons(b.readyInputs())
	if len(why) > 0 {
		b.metrics.notReady.Inc()
		http.Error(w, "not ready: "+strings.Join(why, "\nnot ready: ")+"\n", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}
