package client

import "testing"

// A CreateTopic whose first attempt got no answer and whose retry found
// the topic counts it as its own only when the topic has what it asked for.
func TestTopicConfigMatches(t *testing.T) {
	have := TopicConfig{Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: 2, RetentionMs: 1000, RetentionBytes: -1,
		MaxRecordBytes: 1 << 20, DeleteRetentionMs: 86400000}
	for _, c := range []struct {
		want TopicConfig
		ok   bool
	}{
		{TopicConfig{}, true},
		{TopicConfig{Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: 2, RetentionMs: 1000, CleanupPolicy: "delete"}, true},
		{TopicConfig{Partitions: 6}, false},
		{TopicConfig{ReplicationFactor: 1}, false},
		{TopicConfig{MinInsyncReplicas: 1}, false},
		{TopicConfig{RetentionMs: 5}, false},
		{TopicConfig{RetentionBytes: 5}, false},
		{TopicConfig{MaxRecordBytes: 5}, false},
		{TopicConfig{KeyIndex: true}, false},
		{TopicConfig{CleanupPolicy: "compact"}, false},
		{TopicConfig{DeleteRetentionMs: 5}, false},
	} {
		if got := c.want.matches(have); got != c.ok {
			t.Errorf("%+v matches %+v: %v, want %v", c.want, have, got, c.ok)
		}
	}
}
