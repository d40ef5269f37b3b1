// Command broker runs a Skein broker, and administers topics on a running one.
//
//	broker [flags]                       serve (data under ./data by default)
//	broker topic create NAME [flags]     create a topic
//	broker topic list                    list topics
//	broker topic describe NAME           show partitions: leader, ISR, offsets, size
//	broker topic delete NAME             delete a topic and its data
//	broker topic alter NAME              change a topic's settings live, add partitions
//	broker group list|describe G|reset-offsets G|delete G   consumer groups
//	broker cluster                       members, controller, partitions needing attention
//	broker config get|set|unset          run-time broker settings
//	broker reassign plan|execute|status|cancel   move replicas between brokers
//	broker rebalance [--yes]             spread replicas and leaders over every broker
//	broker decommission ID               move every replica off a broker, then remove it
//	broker user create|delete|list       SCRAM users
//	broker acl add|remove|list           access rules (--authorizer acl)
//	broker healthcheck                   exit 0 if the broker at --addr serves
//	broker certs create                  a CA, broker and client certificates
//
// Every serve flag has an environment variable: --data-dir is SKEIN_DATA_DIR,
// and so on. Run `broker -h` or `broker topic -h` for the lists.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/skeinlog/skein/internal/cli"
)

func main() {
	ctx, stop := cli.SignalContext()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "topic", "topics":
			return runTopic(ctx, args[1:], stdout, stderr)
		case "group", "groups":
			return runGroup(ctx, args[1:], stdout, stderr)
		case "cluster":
			return runCluster(ctx, args[1:], stdout, stderr)
		case "config":
			return runConfig(ctx, args[1:], stdout, stderr)
		case "quota", "quotas":
			return runQuota(ctx, args[1:], stdout, stderr)
		case "user", "users":
			return runUser(ctx, args[1:], stdout, stderr)
		case "acl", "acls":
			return runACL(ctx, args[1:], stdout, stderr)
		case "certs":
			return runCerts(args[1:], stdout, stderr)
		case "reassign":
			return runReassign(ctx, args[1:], stdout, stderr)
		case "rebalance":
			return runRebalance(ctx, args[1:], os.Stdin, stdout, stderr)
		case "decommission":
			return runDecommission(ctx, args[1:], stdout, stderr)
		case "healthcheck":
			return runHealthcheck(ctx, args[1:], stdout, stderr)
		case "serve":
			args = args[1:]
		case "help":
			fmt.Fprint(stdout, usage)
			return 0
		default:
			if len(args[0]) > 0 && args[0][0] != '-' {
				fmt.Fprintf(stderr, "broker: unknown command %q\n\n%s", args[0], usage)
				return 2
			}
		}
	}
	return runServe(ctx, args, stdout, stderr)
}

const usage = `Usage:
  broker [serve] [flags]              run a broker (data under ./data by default)
  broker topic create NAME [flags]    create a topic
  broker topic list                   list topics
  broker topic describe NAME          show each partition's leader, ISR, offsets, size
  broker topic delete NAME            delete a topic and all of its data
  broker topic alter NAME [flags]     change a topic's settings live, add partitions
  broker group list|describe|reset-offsets|delete   consumer groups (broker group -h)
  broker cluster                      show brokers, the controller, and partitions needing attention
  broker config get|set|unset         run-time broker settings (log.level, retention.check.interval, replication.throttle)
  broker reassign plan|execute|status|cancel   move replicas between brokers (broker reassign -h)
  broker rebalance [--yes]            spread replicas and leaders evenly over every live broker
  broker decommission ID              move every replica off broker ID, then remove it from the cluster
  broker quota set|remove|list        client quotas: produce/fetch bytes and requests per second (broker quota -h)
  broker user create|delete|list      SCRAM users (broker user -h)
  broker acl add|remove|list          access rules for --authorizer acl (broker acl -h)
  broker healthcheck [--addr A]       exit 0 if the broker at A is serving
  broker certs create --dir D --hosts H1,H2 [--clients alice,bob]   a CA, broker and client certificates for TLS

Run "broker -h" or "broker topic create -h" for the flags.
`
