package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/client"
)

const aclUsage = `Usage:
  broker acl add    --principal User:NAME --operation OP RESOURCE [--deny]   allow (or deny) an operation
  broker acl remove --principal User:NAME --operation OP RESOURCE [--deny]   remove that rule
  broker acl list   [--principal User:NAME]                                   list the rules
OP: read, write, create, delete, describe, alter or all.
RESOURCE: --topic NAME, --topic-prefix P, --group NAME, --group-prefix P or
--cluster. "--topic '*'" is every topic; "--principal 'User:*'" everyone.
The rules apply when brokers run with --authorizer acl: deny by default,
a deny rule wins over any allow, super users (--super-users) may do anything.
Common flags: --brokers, --timeout, --user, --password (as for "broker topic").
`

// aclFlags are the flags naming one rule.
type aclFlags struct {
	principal, operation              string
	topic, topicPrefix, group, groupP string
	cluster, deny                     bool
}

func (f *aclFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.principal, "principal", "", "User:NAME, or User:* for everyone")
	fs.StringVar(&f.operation, "operation", "", "read, write, create, delete, describe, alter or all")
	fs.StringVar(&f.topic, "topic", "", "the topic (\"*\": every topic)")
	fs.StringVar(&f.topicPrefix, "topic-prefix", "", "every topic whose name starts with this")
	fs.StringVar(&f.group, "group", "", "the consumer group (\"*\": every group)")
	fs.StringVar(&f.groupP, "group-prefix", "", "every group whose name starts with this")
	fs.BoolVar(&f.cluster, "cluster", false, "the cluster (topic creation, broker settings, users and ACLs)")
	fs.BoolVar(&f.deny, "deny", false, "a deny rule: it wins over every allow")
}

// acl builds and checks the rule the flags name.
func (f *aclFlags) acl() (auth.ACL, error) {
	a := auth.ACL{Principal: auth.Principal(f.principal), Operation: auth.Operation(f.operation), Deny: f.deny}
	n := 0
	for _, r := range []struct {
		set    bool
		typ    auth.ResourceType
		name   string
		prefix bool
	}{
		{f.topic != "", auth.Topic, f.topic, false}, {f.topicPrefix != "", auth.Topic, f.topicPrefix, true},
		{f.group != "", auth.Group, f.group, false}, {f.groupP != "", auth.Group, f.groupP, true},
		{f.cluster, auth.Cluster, "", false},
	} {
		if r.set {
			n++
			a.Type, a.Name, a.Prefix = r.typ, r.name, r.prefix
		}
	}
	if n != 1 {
		return a, errors.New("name one resource: --topic, --topic-prefix, --group, --group-prefix or --cluster")
	}
	if op, err := auth.ParseOperation(f.operation); err == nil {
		a.Operation = op
	}
	return a, a.Validate()
}

// runACL is "broker acl".
func runACL(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, rest, code, ok := subcommand("broker acl", args, map[string]int{"add": 0, "remove": 0, "list": 0}, aclUsage, stdout, stderr)
	if !ok {
		return code
	}
	what := "broker acl " + sub
	fs := flag.NewFlagSet(what, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	var af aclFlags
	af.register(fs)
	positional, code, done := parseArgs(fs, rest)
	if done {
		return code
	}
	if len(positional) != 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n\n%s", what, positional[0], aclUsage)
		return 2
	}
	var rule auth.ACL
	if sub != "list" {
		var err error
		if rule, err = af.acl(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n\n%s", what, err, aclUsage)
			return 2
		}
	}
	ca := client.ACL{Principal: string(rule.Principal), Operation: string(rule.Operation), ResourceType: string(rule.Type), Name: rule.Name, Prefix: rule.Prefix, Deny: rule.Deny}
	return withClient(ctx, stderr, what, admin, func(ctx context.Context, cl *client.Client) error {
		switch sub {
		case "add":
			if err := cl.AddACL(ctx, ca); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "added: %s\n", rule)
			return nil
		case "remove":
			if err := cl.RemoveACL(ctx, ca); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "removed: %s\n", rule)
			return nil
		}
		return listACLs(ctx, cl, af.principal, stdout)
	})
}

func listACLs(ctx context.Context, cl *client.Client, principal string, stdout io.Writer) error {
	acls, err := cl.ListACLs(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRINCIPAL\tPERMISSION\tOPERATION\tRESOURCE\tNAME\tPATTERN")
	for _, a := range acls {
		if principal != "" && a.Principal != principal {
			continue
		}
		perm, pattern, name := "allow", "literal", a.Name
		if a.Deny {
			perm = "deny"
		}
		if a.Prefix {
			pattern = "prefix"
		}
		if a.ResourceType == "cluster" {
			pattern, name = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Principal, perm, a.Operation, a.ResourceType, name, pattern)
	}
	return tw.Flush()
}
