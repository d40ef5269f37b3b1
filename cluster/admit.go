package cluster

import "fmt"

// Identity is what a broker answers on its inter-broker listener when the
// controller asks who it is (Config.Verify).
type Identity struct {
	ID         int32
	StorageID  string
	GossipAddr string
}

// admission is the controller's decision about a gossip member that
// claims a broker id.
type admission int

const (
	// admitKnown: registered exactly as it gossips; nothing to do.
	admitKnown admission = iota
	// admitNew: an id not registered yet; register it once verified.
	admitNew
	// admitUpdate: the registered broker with changed details (the same
	// gossip address or the same storage id); register once verified.
	admitUpdate
	// admitRefuse: it claims a registered broker's id from another address
	// with another storage id, or while that broker is alive elsewhere.
	admitRefuse
)

// memberInfo is the registration a gossip member asks for.
func memberInfo(m Member) BrokerInfo {
	return BrokerInfo{ID: m.Meta.ID, Addr: m.Meta.Addr, ExternalAddr: m.Meta.External, KafkaAddr: m.Meta.Kafka, PeerAddr: m.Meta.PeerAddr,
		Rack: m.Meta.Rack, GossipAddr: m.GossipAddr, StorageID: m.Meta.StorageID}
}

// sameRegistration reports whether a registration already says what info
// does (Fenced aside, which the controller decides).
func sameRegistration(b, info BrokerInfo) bool {
	b.Fenced, b.Draining = false, false
	return b == info
}

// admit decides what to do with gossip member m. liveAtRegistered: another
// gossip member is alive at the address the broker is registered with.
// Pure: the caller verifies and commits.
func admit(s *Snapshot, m Member, liveAtRegistered bool) (admission, string) {
	b, ok := s.Broker(m.Meta.ID)
	if !ok {
		if s.Decommissioned(m.Meta.ID, m.Meta.StorageID) {
			return admitRefuse, fmt.Sprintf("broker %d was decommissioned; to join again it needs an empty data directory", m.Meta.ID)
		}
		return admitNew, ""
	}
	if sameRegistration(b, memberInfo(m)) {
		return admitKnown, ""
	}
	sameAddr := b.GossipAddr == m.GossipAddr
	if !sameAddr && liveAtRegistered {
		return admitRefuse, fmt.Sprintf("broker %d is alive at %s; this node at %s claims its id (every broker needs its own --node-id)",
			b.ID, b.GossipAddr, m.GossipAddr)
	}
	if sameAddr || b.StorageID == "" || b.StorageID == m.Meta.StorageID {
		return admitUpdate, ""
	}
	return admitRefuse, fmt.Sprintf("broker %d is registered at %s with another storage id; this node at %s claims its id with other data "+
		"(a broker that lost its data must come back at its registered address; another broker needs its own --node-id)",
		b.ID, b.GossipAddr, m.GossipAddr)
}

// verifiedMembers maps each registered broker to the gossip member at its
// registered gossip address (the latest incarnation there). Members that
// claim a registered id from elsewhere, and members never registered, are
// not in it: they get no vote, no partition, and do not keep a broker
// alive or unfenced.
func verifiedMembers(s *Snapshot, members []Member) map[int32]Member {
	out := map[int32]Member{}
	for _, m := range members {
		b, ok := s.Broker(m.Meta.ID)
		if !ok || m.State != "alive" || m.GossipAddr != b.GossipAddr {
			continue
		}
		if cur, ok := out[m.Meta.ID]; !ok || m.Meta.Incarnation > cur.Meta.Incarnation {
			out[m.Meta.ID] = m
		}
	}
	return out
}

// checkIdentity compares what a member gossips with what its inter-broker
// listener answers.
func checkIdentity(m Member, id Identity) error {
	if id.ID != m.Meta.ID || id.StorageID != m.Meta.StorageID || id.GossipAddr != m.GossipAddr {
		return fmt.Errorf("its inter-broker listener %s answers broker %d, storage id %q, gossip %s; it gossips broker %d, storage id %q, gossip %s",
			m.Meta.PeerAddr, id.ID, id.StorageID, id.GossipAddr, m.Meta.ID, m.Meta.StorageID, m.GossipAddr)
	}
	return nil
}

// superseded reports whether a newer incarnation than m gossips at m's
// address: m is a process that has stopped there (memberlist still lists
// it until it is declared dead). Registering it would verify it through
// the new process's listener and could write the old process's details
// back over the new one's, again and again while both are listed.
func superseded(m Member, members []Member) bool {
	for _, o := range members {
		if o.GossipAddr == m.GossipAddr && o.State == "alive" && o.Meta.ID == m.Meta.ID && o.Meta.Incarnation > m.Meta.Incarnation {
			return true
		}
	}
	return false
}
