package replication

import (
	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/proto/batch"
)

// trace reports a step to c.Trace, if set; offset is computed only then.
func (c *Config) trace(s partition.Step, replica int32, offset func() int64) {
	if c.Trace != nil {
		c.Trace(s, replica, offset())
	}
}

// batchesEnd is the offset after the last of the batches, from, if they
// cannot be parsed.
func batchesEnd(batches []byte, from int64) int64 {
	end := from
	for rest := batches; len(rest) > 0; {
		v, next, err := batch.Next(rest)
		if err != nil {
			break
		}
		end, rest = v.NextOffset(), next
	}
	return end
}
