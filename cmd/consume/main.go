// Command consume reads records from a Skein topic, like kcat -C or rpk
// topic consume, and writes them to standard output.
//
//	consume -t demo -o beginning -e
//	consume -t demo -p 0,2 -o -10 -f '%p/%o %k=%v\n'
//	consume -t demo -o @2024-05-01T00:00:00Z --json
//
// It follows the log by default (a long-poll fetch stream per partition;
// never a busy loop); -e exits once every partition has been read to the
// high watermark it had when reading caught up, -c N after N records.
//
// Start offset (-o, the same for every partition): beginning (or earliest),
// end (or latest: only new records), N (absolute offset), -N (N records
// before the end, clamped at the log start), @T (the first record at or
// after T, an RFC 3339 time or unix milliseconds).
//
// Output: -f FORMAT (default "%v\n") with %t topic, %p partition, %o
// offset, %k key, %v value, %h headers as k=v,k=v, %T timestamp (unix ms),
// %% a percent sign, and the escapes \n \t \r \0 \\. A null key or value
// prints as nothing. --json writes one JSON object per record and line:
// {"topic","partition","offset","timestamp","key","value","headers"}; a key
// or value that is not UTF-8 is written base64-encoded as key_b64 or
// value_b64 instead, a null one as null, and headers as a list of [k, v]
// pairs. produce --json reads that format back unchanged.
//
// --stats json prints records, bytes (keys, values and headers), seconds,
// records/s and MB/s (10^6 bytes), and each partition's position, as one
// JSON object on standard output at exit; -v prints the same summary on
// standard error.
//
// Exit status: 0 at the end (-e, -c) or on Ctrl-C, after writing what was
// read; 1 on an error (an unknown topic or partition, an offset out of
// range, which names the valid range); 2 for bad usage.
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
