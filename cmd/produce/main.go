// Command produce writes records to a Skein topic, like kcat -P or rpk
// topic produce: one record per line of standard input, or generated
// records in bench mode.
//
//	printf 'k1:hello\nk2:world\n' | produce -t demo -K :
//	produce -t demo --json < records.jsonl
//	produce -t demo -p 0 --expect-offset 42 < batch.txt
//	produce -t demo --count 1000000 --size 100 --stats json
//
// Input: one record per line (the delimiter is -D, default "\n"; the
// escapes \n \t \r \0 \\ and \xNN are understood in -D, -K and -k). With
// -K SEP the text before the first SEP is the key and the rest the value
// (a line without SEP has a null key); -k KEY gives every record that key;
// -H k=v adds a header to every record (repeatable). With --json each line
// is a JSON object: key, value (strings, or key_b64/value_b64 in base64),
// headers (an object or a list of [k, v] pairs), partition and timestamp
// (unix ms or RFC 3339) - the format consume --json writes.
//
// Records go to -p N, else to the partitioner's choice: murmur2 of the key
// as in Kafka, sticky batches for records without a key. --expect-offset N
// sends all the input as ONE batch to ONE partition, appended only if the
// partition's next offset is N (exit code 3 otherwise, printing the actual
// next offset).
//
// Bench mode (--count N --size B [--rate R] [--payload random|json])
// produces N records of B bytes without reading standard input.
//
// At the end a summary goes to standard error: records, bytes (keys,
// values and headers), seconds, records/s, MB/s (10^6 bytes), the ack
// latency percentiles (from Produce to its acknowledgement) and each
// partition's offset range; --stats json prints it as one JSON object on
// standard output instead. --report (or -v) prints "partition offset input"
// on standard output for every acknowledged record, in acknowledgement order
// (input order within a partition), where input is "line N" or, in bench
// mode, "record N" (the N in the json payload's "id").
//
// Exit status: 0 when every record was acknowledged; 1 when any failed
// (each failure is named by line or index, partition and reason) or on
// other errors; 2 for bad usage; 3 on an --expect-offset mismatch; 130 when
// interrupted (what was read is still sent and summarised).
package main

import (
	"os"

	"github.com/skeinlog/skein/internal/cli"
)

func main() {
	ctx, stop := cli.SignalContext()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
