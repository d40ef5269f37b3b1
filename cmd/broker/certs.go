package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/skeinlog/skein/internal/tlsconf"
)

// runCerts is `broker certs create`: a CA, a broker certificate and client
// certificates for a dev or test cluster.
func runCerts(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprint(stderr, "Usage: broker certs create --dir DIR --hosts H1,H2 [--clients NAME,...] [--days N] [--force | --keep-existing]\n")
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			return 0
		}
		return 2
	}
	fs := flag.NewFlagSet("broker certs create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o tlsconf.CreateOptions
	var hosts, clients string
	fs.StringVar(&o.Dir, "dir", "certs", "directory to write the certificates and keys into")
	fs.StringVar(&hosts, "hosts", "", "comma-separated host names and IP addresses clients and brokers use to reach the brokers (the broker certificate's names)")
	fs.StringVar(&clients, "clients", "", "comma-separated client names: one certificate each, its subject CN the principal")
	fs.IntVar(&o.Days, "days", 365, "lifetime of the broker and client certificates in days (the CA lives ten times as long)")
	fs.BoolVar(&o.Force, "force", false, "replace existing files")
	fs.BoolVar(&o.KeepExisting, "keep-existing", false, "if every file exists already, keep them and succeed (first start of a container)")
	positional, code, done := parseArgs(fs, args[1:])
	if done {
		return code
	}
	if len(positional) > 0 {
		fmt.Fprintf(stderr, "broker certs create: takes no arguments (got %s)\n", strings.Join(positional, " "))
		return 2
	}
	o.Hosts, o.Clients = splitList(hosts), splitList(clients)
	files, err := tlsconf.Create(o)
	if err != nil {
		fmt.Fprintf(stderr, "broker certs create: %v\n", err)
		return 1
	}
	if len(files) == 0 {
		fmt.Fprintf(stdout, "%s already holds every file: kept\n", o.Dir)
		return 0
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", f.Path)
	}
	printCertFlags(stdout, o.Dir, o.Clients)
	return 0
}

// printCertFlags tells which flag takes which file.
func printCertFlags(w io.Writer, dir string, clients []string) {
	f := func(name string) string { return filepath.Join(dir, name) }
	fmt.Fprintf(w, "\nBrokers (every broker of the cluster):\n  broker --tls-cert-file %s --tls-key-file %s --tls-ca-file %s [--tls-client-auth require]\n",
		f("broker.crt"), f("broker.key"), f("ca.crt"))
	fmt.Fprintf(w, "  --gossip-key-file %s\n", f("gossip.key"))
	fmt.Fprintf(w, "Clients (produce, consume, broker topic ...):\n  --tls-ca-file %s", f("ca.crt"))
	if len(clients) > 0 {
		fmt.Fprintf(w, " --tls-cert-file %s --tls-key-file %s", f(clients[0]+".crt"), f(clients[0]+".key"))
	}
	fmt.Fprintf(w, "\nKeep %s away from the brokers: it signs certificates.\n", f("ca.key"))
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string { return splitOn(s, ",") }

// splitOn splits s at every sep, trimming items and dropping empty ones.
func splitOn(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
