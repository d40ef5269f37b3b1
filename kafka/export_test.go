package kafka

// AppendKafkaForTest converts Skein batches to Kafka batches for the
// external tests.
func AppendKafkaForTest(skein []byte) ([]byte, error) { return appendKafka(nil, skein) }
