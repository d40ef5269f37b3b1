// Package cli holds what Skein's commands share: the client's logs on
// demand (SKEIN_LOG=debug, info or warn sends them to standard error) and
// signal handling (the first SIGINT or SIGTERM cancels a context for a
// clean stop, a second ends the process at once).
package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext returns a context cancelled by the first SIGINT or SIGTERM;
// a second one exits the process with status 1 at once. Call stop when done.
func SignalContext() (ctx context.Context, stop context.CancelFunc) {
	ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		os.Stderr.WriteString("second signal: exiting now\n")
		os.Exit(1)
	}()
	return ctx, stop
}

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
