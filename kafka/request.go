package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const apiVersionsKey = 18

// versionRange is the versions of one API the listener implements.
type versionRange struct{ min, max int16 }

// supported lists every API the listener answers and the versions it has
// been tested with; ApiVersions advertises exactly this.
var supported = map[int16]versionRange{
	0:  {3, 9},  // Produce: record batch v2 only
	1:  {4, 12}, // Fetch
	2:  {1, 6},  // ListOffsets
	3:  {0, 12}, // Metadata
	18: {0, 4},  // ApiVersions
	19: {0, 7},  // CreateTopics
	20: {0, 6},  // DeleteTopics
	22: {0, 4},  // InitProducerId
	32: {0, 4},  // DescribeConfigs
	8:  {2, 8},  // OffsetCommit
	9:  {1, 8},  // OffsetFetch
	10: {0, 4},  // FindCoordinator
	16: {0, 4},  // ListGroups
	42: {0, 2},  // DeleteGroups
	68: {1, 1},  // ConsumerGroupHeartbeat (KIP-848)
	11: {0, 9},  // JoinGroup
	14: {0, 5},  // SyncGroup
	12: {0, 4},  // Heartbeat
	13: {0, 5},  // LeaveGroup
	15: {0, 5},  // DescribeGroups
	37: {0, 3},  // CreatePartitions
	33: {0, 2},  // AlterConfigs
	44: {0, 1},  // IncrementalAlterConfigs
	17: {0, 1},  // SaslHandshake: v0 only advertised (librdkafka needs it) and refused; v1 with SaslAuthenticate
	36: {0, 2},  // SaslAuthenticate
}

// Request decoding errors: each closes the connection, as Kafka does.
var (
	errShortHeader    = errors.New("request header truncated")
	errUnknownAPI     = errors.New("unknown API key")
	errVersion        = errors.New("unsupported API version")
	errMalformedBody  = errors.New("malformed request body")
	errTrailingHeader = errors.New("request header tag section malformed")
)

// decodeRequest parses one frame: the request header (key, version,
// correlation id, client id and, for flexible versions, a tag section) and
// the body with kmsg. An ApiVersions request of a version newer than
// supported is answered (version 0, UNSUPPORTED_VERSION, with the supported
// versions) so the client can pick one; any other unknown key, unsupported
// version or malformed body is an error and the connection is closed.
func decodeRequest(frame []byte) (*pending, kmsg.Request, error) {
	if len(frame) < 8 {
		return nil, nil, fmt.Errorf("%w: %d bytes", errShortHeader, len(frame))
	}
	key := int16(binary.BigEndian.Uint16(frame[0:]))
	version := int16(binary.BigEndian.Uint16(frame[2:]))
	p := &pending{corr: int32(binary.BigEndian.Uint32(frame[4:])), key: key, version: version, done: make(chan struct{})}
	rest := frame[8:]
	// Client id: a nullable int16-length string.
	if len(rest) < 2 {
		return nil, nil, fmt.Errorf("%w: no client id", errShortHeader)
	}
	idLen := int(int16(binary.BigEndian.Uint16(rest)))
	rest = rest[2:]
	if idLen > 0 {
		if idLen > len(rest) {
			return nil, nil, fmt.Errorf("%w: client id of %d bytes", errShortHeader, idLen)
		}
		p.clientID = string(rest[:idLen])
		rest = rest[idLen:]
	}
	req := kmsg.RequestForKey(key)
	vr, ok := supported[key]
	if req == nil || !ok {
		return nil, nil, fmt.Errorf("%w %d (version %d)", errUnknownAPI, key, version)
	}
	if version < vr.min || version > vr.max {
		if key == apiVersionsKey && version > vr.max {
			p.version = 0
			resp := apiVersionsResponse()
			resp.ErrorCode = kerr.UnsupportedVersion.Code
			p.answer(resp)
			return p, nil, nil
		}
		return nil, nil, fmt.Errorf("%w: %s version %d, this broker supports %d to %d", errVersion, kmsg.NameForKey(key), version, vr.min, vr.max)
	}
	req.SetVersion(version)
	p.flexible = req.IsFlexible()
	if p.flexible {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return nil, nil, err
		}
	}
	if err := req.ReadFrom(rest); err != nil {
		return nil, nil, fmt.Errorf("%w: %s v%d: %v", errMalformedBody, kmsg.NameForKey(key), version, err)
	}
	return p, req, nil
}

// clientIDLabel is a client id as quotas name it: valid UTF-8, at most
// 255 bytes.
func clientIDLabel(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// skipTags skips a header's tag section (uvarint count, then per tag a
// uvarint key, uvarint size and the bytes).
func skipTags(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errTrailingHeader
	}
	b = b[k:]
	for ; n > 0; n-- {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, errTrailingHeader
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || size > uint64(len(b)-k) {
			return nil, errTrailingHeader
		}
		b = b[k+int(size):]
	}
	return b, nil
}

// apiVersionsResponse lists the supported APIs.
func apiVersionsResponse() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	keys := make([]int16, 0, len(supported))
	for key := range supported {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		vr := supported[key]
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = key, vr.min, vr.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp
}
