package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/skeinlog/skein/client"
)

// UserUsage is the help text of the flags UserFlags registers.
const UserUsage = `      --user NAME          authenticate as this SCRAM user (env SKEIN_USER)
      --password PASS      its password; prefer SKEIN_PASSWORD (a command line is
                           visible to every user of the host)
`

// UserFlags are --user and --password (env SKEIN_USER, SKEIN_PASSWORD). The password is never printed: the flags carry no
// default, so -h shows none.
type UserFlags struct {
	user, password string
}

// Register defines the flags on fs.
func (u *UserFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&u.user, "user", "", "authenticate as this SCRAM user (env SKEIN_USER)")
	fs.StringVar(&u.password, "password", "", "the user's password (env SKEIN_PASSWORD, which is safer)")
}

// Credentials resolves the user and password from the flags and the
// environment: the flags win. No user: empty strings.
func (u *UserFlags) Credentials() (user, password string, err error) {
	user = u.user
	if user == "" {
		user = os.Getenv("SKEIN_USER")
	}
	if user == "" {
		if u.password != "" {
			return "", "", errors.New("a password without a user: give --user (or SKEIN_USER)")
		}
		return "", "", nil
	}
	password = u.password
	if password == "" {
		password = os.Getenv("SKEIN_PASSWORD")
	}
	if password == "" {
		return "", "", fmt.Errorf("user %q has no password: set SKEIN_PASSWORD (or give --password)", user)
	}
	return user, password, nil
}

// Given reports whether a user was given (by flag or SKEIN_USER).
func (u *UserFlags) Given() bool { return u.user != "" || os.Getenv("SKEIN_USER") != "" }

// ClientOpts are the client options for the resolved user, if any.
func (u *UserFlags) ClientOpts() ([]client.ClientOpt, error) {
	user, pass, err := u.Credentials()
	if err != nil || user == "" {
		return nil, err
	}
	return []client.ClientOpt{client.UserPassword(user, pass)}, nil
}

// ReadPasswordFile reads a password: the file's first line, without its
// line ending.
func ReadPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("password file %s: the first line is empty", path)
	}
	return line, nil
}

// PromptPassword asks for a password twice on the terminal, without
// echoing it. It fails when standard input is not a terminal.
func PromptPassword(prompt string, stderr io.Writer) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("no password: give --password-file or SKEIN_PASSWORD (standard input is not a terminal to ask on)")
	}
	fmt.Fprint(stderr, prompt)
	p1, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "again: ")
	p2, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if string(p1) != string(p2) {
		return "", errors.New("the passwords differ")
	}
	if len(p1) == 0 {
		return "", errors.New("empty password")
	}
	return string(p1), nil
}
