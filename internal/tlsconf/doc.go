// Package tlsconf is Skein's TLS: certificates for a dev or test cluster
// (Create, `broker certs create`), the broker's certificate, key and CA read
// from files and re-read when they change (Source), the server and client
// configurations every listener and inter-broker dial uses (TLS 1.2 and
// later only), and the principal of a verified client certificate (PeerCN).
package tlsconf
