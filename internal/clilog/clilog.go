// Package clilog gives the command-line tools the client's logs on demand:
// SKEIN_LOG=debug (or info, warn) sends them to standard error.
package clilog

import (
	"io"
	"log/slog"
	"os"
)

// Logger returns a logger for the client per SKEIN_LOG, writing to w;
// without SKEIN_LOG it discards everything.
func Logger(w io.Writer) *slog.Logger {
	v := os.Getenv("SKEIN_LOG")
	if v == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(v)); err != nil {
		lv = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}
