// Package auth decides who a caller is and what it may do.
//
// A Principal names a caller: "User:alice" for a SCRAM user or the subject
// CN of a verified client certificate, "User:ANONYMOUS" for a caller that
// presented neither. An Authorizer answers whether a principal may perform
// an Operation on a Resource (a topic, a group or the cluster) from the
// ACLs and super users it is given; Decide is that rule as a pure function.
// Credentials are SCRAM-SHA-256/512 salted keys (never passwords); Verify
// checks a password against them and Cache remembers recent successes so
// the key derivation is not paid per request.
//
// The package imports nothing of Skein's: the controller stores its ACL and
// Credential values, the gRPC server and the Kafka listener consult its
// Authorizer from one interceptor or request hook each. It starts no
// goroutines.
package auth
