package chaos

// The consumer group's checks (G13): the group's committed position of a
// partition never goes back, and every record below the final high
// watermark is delivered to the group at least once. The group's reads
// are also held to G2–G5 like any other observation.

// checkGroup runs the group checks over the history, after the final read
// was indexed. A history without group operations checks nothing.
func (c *chkState) checkGroup(h []Op) {
	delivered := map[chkPO]int{}
	maxOK := map[int32]int64{}        // the highest acknowledged commit per partition so far
	atInvoke := map[int]int64{}       // commit process -> maxOK of its partition when invoked
	resume := map[chkProcPart]int64{} // member started the partition: its first read must reach this
	seen := false
	for i := range h {
		op := &h[i]
		switch op.F {
		case FCommit:
			seen = true
			c.checkCommit(op, maxOK, atInvoke)
		case FAssign:
			seen = true
			if m, ok := maxOK[op.Partition]; ok {
				resume[chkProcPart{op.Process, op.Partition}] = m
			}
		case FGroupRead:
			seen = true
			key := chkProcPart{op.Process, op.Partition}
			if want, ok := resume[key]; ok {
				delete(resume, key)
				if op.Offset < want {
					c.res.Anomalies.CommitRegression++
					c.example("commit_regression", "p=%d: member %d started at off=%d (at %v) below the acknowledged commit %d", op.Partition, op.Process, op.Offset, op.Time, want)
				}
			}
			c.res.GroupReads++
			po := chkPO{op.Partition, op.Offset}
			delivered[po]++
			if delivered[po] == 2 {
				c.res.GroupRedelivered++
			}
			src := chkSrc{kind: chkSrcGroup, id: op.Process, t: op.Time}
			if !c.checkValue(src, op.Partition, op.Offset, op.Value, op.Corrupt, true) {
				continue
			}
			if !c.observe(src, op.Partition, op.Offset, op.Value) {
				c.flagInconsistent(po, "%s read %s; the final read (HW %d) lacks the offset", src, chkValue(op.Value), c.f.HW[op.Partition])
			}
		}
	}
	if seen {
		c.checkUndelivered(delivered)
	}
}

// checkCommit: an acknowledged commit must not be below one acknowledged
// before it was invoked.
func (c *chkState) checkCommit(op *Op, maxOK map[int32]int64, atInvoke map[int]int64) {
	switch op.Type {
	case Invoke:
		if m, ok := maxOK[op.Partition]; ok {
			atInvoke[op.Process] = m
		} else {
			delete(atInvoke, op.Process)
		}
	case OK:
		c.res.GroupCommits++
		if m, ok := atInvoke[op.Process]; ok && op.Offset < m {
			c.res.Anomalies.CommitRegression++
			c.example("commit_regression", "p=%d: commit of %d acknowledged at %v after the commit of %d was", op.Partition, op.Offset, op.Time, m)
		}
		if m, ok := maxOK[op.Partition]; !ok || op.Offset > m {
			maxOK[op.Partition] = op.Offset
		}
	}
}

// checkUndelivered counts the records of the final read that no member of
// the group was given.
func (c *chkState) checkUndelivered(delivered map[chkPO]int) {
	for _, p := range chkSortedKeys(c.f.Reads) {
		for _, r := range c.f.Reads[p] {
			if delivered[chkPO{p, r.Offset}] == 0 {
				c.res.Anomalies.GroupUndelivered++
				c.example("group_undelivered", "p=%d off=%d: %s was never delivered to group %s", p, r.Offset, chkValue(r.Value), groupName)
			}
		}
	}
}
