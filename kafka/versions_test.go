package kafka_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/broker/brokertest"
)

// rawClient speaks one API version at a time over a plain connection.
type rawClient struct {
	t    *testing.T
	c    net.Conn
	f    *kmsg.RequestFormatter
	corr int32
}

func (r *rawClient) do(req kmsg.Request, version int16) kmsg.Response {
	r.t.Helper()
	req.SetVersion(version)
	r.corr++
	if _, err := r.c.Write(r.f.AppendRequest(nil, req, r.corr)); err != nil {
		r.t.Fatal(err)
	}
	r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(r.c, size[:]); err != nil {
		r.t.Fatalf("%s v%d: %v", kmsg.NameForKey(req.Key()), version, err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r.c, body); err != nil {
		r.t.Fatal(err)
	}
	body = body[4:]                          // correlation id
	if req.IsFlexible() && req.Key() != 18 { // ApiVersions answers with the old header
		body = body[1:] // header tag section
	}
	resp := req.ResponseKind()
	resp.SetVersion(version)
	if err := resp.ReadFrom(body); err != nil {
		r.t.Fatalf("decode %s v%d: %v", kmsg.NameForKey(req.Key()), version, err)
	}
	return resp
}

// Every version the listener advertises for the classic group APIs and
// the partition and config APIs works: a member joins, syncs, heartbeats,
// commits and leaves at each JoinGroup version, with the other APIs
// cycling through theirs.
func TestKafkaAdvertisedVersions(t *testing.T) {
	b := brokertest.Start(t)
	ctx := ctxFor(t, 60*time.Second)
	adm := kadm.NewClient(kafkaClient(t, b.KafkaAddr()))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "v"); err != nil {
		t.Fatal(err)
	}
	adm.FindGroupCoordinators(ctx, "warm") // creates the offsets topic
	nc, err := net.Dial("tcp", b.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rc := &rawClient{t: t, c: nc, f: kmsg.NewRequestFormatter(kmsg.FormatterClientID("vtest"))}
	av := rc.do(kmsg.NewPtrApiVersionsRequest(), 3).(*kmsg.ApiVersionsResponse)
	adv := map[int16][2]int16{}
	for _, k := range av.ApiKeys {
		adv[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	ver := func(key, i int16) int16 { r := adv[key]; return min(r[0]+i%(r[1]-r[0]+1), r[1]) }
	for _, key := range []int16{11, 12, 13, 14, 15, 33, 37, 44} {
		if _, ok := adv[key]; !ok {
			t.Fatalf("%s is not advertised", kmsg.NameForKey(key))
		}
	}
	for jv := adv[11][0]; jv <= adv[11][1]; jv++ {
		i := jv
		grp := fmt.Sprintf("v%d", jv)
		join := kmsg.NewPtrJoinGroupRequest()
		join.Group, join.ProtocolType, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = grp, "consumer", 10000, 10000
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = "range", []byte{0, 0, 0, 0, 0, 1, 0, 1, 'v', 0, 0, 0, 0}
		join.Protocols = append(join.Protocols, p)
		jr := rc.do(join, jv).(*kmsg.JoinGroupResponse)
		if jv >= 4 {
			if jr.ErrorCode != kerr.MemberIDRequired.Code {
				t.Fatalf("JoinGroup v%d without an id: %v", jv, kerr.ErrorForCode(jr.ErrorCode))
			}
			join.MemberID = jr.MemberID
			jr = rc.do(join, jv).(*kmsg.JoinGroupResponse)
		}
		if jr.ErrorCode != 0 || jr.Generation != 1 || jr.LeaderID != jr.MemberID || len(jr.Members) != 1 {
			t.Fatalf("JoinGroup v%d: %v %+v", jv, kerr.ErrorForCode(jr.ErrorCode), jr)
		}
		id := jr.MemberID
		sync := kmsg.NewPtrSyncGroupRequest()
		sync.Group, sync.MemberID, sync.Generation = grp, id, 1
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID, ga.MemberAssignment = id, []byte("assignment")
		sync.GroupAssignment = append(sync.GroupAssignment, ga)
		sv := ver(14, i)
		if sr := rc.do(sync, sv).(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 || string(sr.MemberAssignment) != "assignment" {
			t.Fatalf("SyncGroup v%d: %v %q", sv, kerr.ErrorForCode(sr.ErrorCode), sr.MemberAssignment)
		}
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.MemberID, hb.Generation = grp, id, 1
		if hr := rc.do(hb, ver(12, i)).(*kmsg.HeartbeatResponse); hr.ErrorCode != 0 {
			t.Fatalf("Heartbeat v%d: %v", ver(12, i), kerr.ErrorForCode(hr.ErrorCode))
		}
		dg := kmsg.NewPtrDescribeGroupsRequest()
		dg.Groups = []string{grp}
		dr := rc.do(dg, ver(15, i)).(*kmsg.DescribeGroupsResponse)
		if len(dr.Groups) != 1 || dr.Groups[0].State != "Stable" || len(dr.Groups[0].Members) != 1 ||
			string(dr.Groups[0].Members[0].MemberAssignment) != "assignment" || dr.Groups[0].Members[0].ClientID != "vtest" {
			t.Fatalf("DescribeGroups v%d: %+v", ver(15, i), dr.Groups)
		}
		leave := kmsg.NewPtrLeaveGroupRequest()
		leave.Group, leave.MemberID = grp, id
		lm := kmsg.NewLeaveGroupRequestMember()
		lm.MemberID = id
		leave.Members = append(leave.Members, lm)
		lv := ver(13, i)
		lr := rc.do(leave, lv).(*kmsg.LeaveGroupResponse)
		if lr.ErrorCode != 0 || lv >= 3 && (len(lr.Members) != 1 || lr.Members[0].ErrorCode != 0) {
			t.Fatalf("LeaveGroup v%d: %+v", lv, lr)
		}
		if hr := rc.do(hb, ver(12, i)).(*kmsg.HeartbeatResponse); hr.ErrorCode != kerr.UnknownMemberID.Code {
			t.Fatalf("heartbeat after leaving: %v", kerr.ErrorForCode(hr.ErrorCode))
		}
	}
	for v := adv[37][0]; v <= adv[37][1]; v++ {
		cp := kmsg.NewPtrCreatePartitionsRequest()
		ct := kmsg.NewCreatePartitionsRequestTopic()
		ct.Topic, ct.Count = "v", int32(v)+2
		cp.Topics, cp.TimeoutMillis = append(cp.Topics, ct), 10000
		if r := rc.do(cp, v).(*kmsg.CreatePartitionsResponse); len(r.Topics) != 1 || r.Topics[0].ErrorCode != 0 {
			t.Fatalf("CreatePartitions v%d: %+v", v, r.Topics)
		}
	}
	for v := adv[44][0]; v <= adv[44][1]; v++ {
		ia := kmsg.NewPtrIncrementalAlterConfigsRequest()
		res := kmsg.NewIncrementalAlterConfigsRequestResource()
		res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, "v"
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = "retention.ms", kmsg.StringPtr(fmt.Sprint(1000000+int(v)))
		res.Configs = append(res.Configs, c)
		ia.Resources = append(ia.Resources, res)
		if r := rc.do(ia, v).(*kmsg.IncrementalAlterConfigsResponse); len(r.Resources) != 1 || r.Resources[0].ErrorCode != 0 {
			t.Fatalf("IncrementalAlterConfigs v%d: %+v", v, r.Resources)
		}
	}
	for v := adv[33][0]; v <= adv[33][1]; v++ {
		ac := kmsg.NewPtrAlterConfigsRequest()
		res := kmsg.NewAlterConfigsRequestResource()
		res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, "v"
		c := kmsg.NewAlterConfigsRequestResourceConfig()
		c.Name, c.Value = "retention.ms", kmsg.StringPtr(fmt.Sprint(2000000+int(v)))
		res.Configs = append(res.Configs, c)
		ac.Resources = append(ac.Resources, res)
		if r := rc.do(ac, v).(*kmsg.AlterConfigsResponse); len(r.Resources) != 1 || r.Resources[0].ErrorCode != 0 {
			t.Fatalf("AlterConfigs v%d: %+v", v, r.Resources)
		}
	}
	td, err := adm.ListTopics(ctx, "v")
	if err != nil || len(td["v"].Partitions) != int(adv[37][1])+2 {
		t.Fatalf("partitions after CreatePartitions: %d %v", len(td["v"].Partitions), err)
	}
	rcfg, _ := adm.DescribeTopicConfigs(ctx, "v")
	c, _ := rcfg.On("v", nil)
	if got := configValue(c.Configs, "retention.ms"); got != fmt.Sprint(2000000+int(adv[33][1])) {
		t.Fatalf("retention.ms %s", got)
	}
}
