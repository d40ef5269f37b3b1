package partition

// Step is a point on the way of an acks=all append from the producer to its
// acknowledgement, across the leader and its followers. Steps are reported
// to a Tracer with the end offset the step reached (the offset after the
// last record it covers), so a benchmark with one record in flight can line
// them up per record and tell where the time goes.
type Step uint8

const (
	// StepWritten: the leader wrote a group to its log (not yet fsynced);
	// followers may copy it from now on.
	StepWritten Step = iota
	// StepSynced: the leader fsynced the group.
	StepSynced
	// StepServed: the leader answers a follower's fetch with batches up to
	// the offset (replica: the follower).
	StepServed
	// StepFetched: a follower received batches up to the offset.
	StepFetched
	// StepReplicated: a follower appended and fsynced up to the offset.
	StepReplicated
	// StepReported: the leader learned that a follower has fsynced up to the
	// offset (replica: the follower).
	StepReported
	// StepHighWatermark: a replica's high watermark reached the offset.
	StepHighWatermark
	// NumSteps counts the steps.
	NumSteps
)

var stepNames = [NumSteps]string{"written", "synced", "served", "fetched", "replicated", "reported", "hw"}

func (s Step) String() string {
	if s < NumSteps {
		return stepNames[s]
	}
	return "unknown"
}

// Tracer is told when an append passes a step: replica is the follower for
// StepServed and StepReported, the following broker for StepFetched and
// StepReplicated, and -1 (the broker reporting the step) otherwise. It is called on the replication path, so it must
// be quick and must not block. For benchmarks and tests; nil in service.
type Tracer func(step Step, replica int32, offset int64)

func (p *Partition) trace(s Step, replica int32, offset int64) {
	if p.cfg.Trace != nil {
		p.cfg.Trace(s, replica, offset)
	}
}
