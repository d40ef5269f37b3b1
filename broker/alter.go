package broker

import (
	"context"
	"errors"

	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"google.golang.org/protobuf/proto"
)

// AlterTopic commits a topic's new settings and partitions through the
// controller (forwarding to it when this broker is not the controller),
// then waits until this broker has applied them, so a describe or produce
// right after sees them.
func (s *server) AlterTopic(ctx context.Context, req *pb.AlterTopicRequest) (*pb.AlterTopicResponse, error) {
	if err := cluster.ValidateTopicName(req.Name); err != nil {
		return nil, toStatus(err)
	}
	alt := cluster.TopicAlter{
		Partitions: req.Partitions, MinInsyncReplicas: req.MinInsyncReplicas,
		RetentionMs: req.RetentionMs, RetentionBytes: req.RetentionBytes, MaxRecordBytes: req.MaxRecordBytes,
		KeyIndex: req.KeyIndex, CleanupPolicy: req.CleanupPolicy, DeleteRetentionMs: req.DeleteRetentionMs,
	}
	if err := s.b.checkCompactable(req.CleanupPolicy); err != nil {
		return nil, toStatus(err)
	}
	t, err := s.b.ctrl.AlterTopic(ctx, req.Name, alt)
	if errors.Is(err, cluster.ErrNotController) {
		var resp *pb.AlterTopicResponse
		if err := s.b.forward(ctx, func(ctx context.Context, c pb.SkeinClient) (err error) {
			resp, err = c.AlterTopic(ctx, req)
			return err
		}); err != nil {
			return nil, err
		}
		want := resp.GetTopic().GetConfig()
		s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool {
			t, ok := snap.Topics[req.Name]
			return ok && proto.Equal(topicToPB(t).GetConfig(), want)
		})
		return resp, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.b.reconcile(); err != nil {
		return nil, toStatus(err)
	}
	want := topicToPB(t).GetConfig()
	s.b.awaitTopicEverywhere(ctx, t, func(m *pb.TopicMetadata) bool { return proto.Equal(m.GetConfig(), want) })
	s.b.log.Info("topic altered", "topic", t.Name, "partitions", t.Config.Partitions,
		"min_insync", t.Config.MinInsyncReplicas, "retention_ms", t.Config.RetentionMs,
		"retention_bytes", t.Config.RetentionBytes, "max_record_bytes", t.Config.MaxRecordBytes,
		"cleanup_policy", t.Config.Policy(), "delete_retention_ms", t.Config.DeleteRetention())
	return &pb.AlterTopicResponse{Topic: topicToPB(t)}, nil
}
