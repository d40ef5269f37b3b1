package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// summary is what the soak found.
type summary struct {
	duration          time.Duration
	maxRSS, budget    int64
	overBudget        int // seconds with RSS above the budget
	maxFDs            int
	notServing        []window // windows of the normal load without enough acks
	windows           int
	probeDown         []time.Duration
	notReady          int
	acked, failed     int64
	consumed, abusive int64
	errors            map[string]int64 // normal producer errors by message
	// calmInflight is the least in-flight bytes seen in each calm spell:
	// what the broker still holds once an abusive pattern has stopped.
	calmInflight []int64
	phases       []phaseTotal // per phase, in the order first seen
}

// phaseTotal is what one kind of phase added up to over the soak.
type phaseTotal struct {
	name             string
	seconds, abusive int64
	acked            int64
}

// phaseTotals adds up the seconds, abusive requests and normal acks of
// each phase, so a pattern that did nothing (its streams refused at once,
// say) shows. Pure.
func phaseTotals(ss []sample) []phaseTotal {
	var out []phaseTotal
	idx := map[string]int{}
	for i := 1; i < len(ss); i++ {
		x, prev := ss[i], ss[i-1]
		j, ok := idx[x.phase]
		if !ok {
			j = len(out)
			idx[x.phase] = j
			out = append(out, phaseTotal{name: x.phase})
		}
		out[j].seconds += int64((x.at - prev.at).Seconds())
		out[j].abusive += x.abusive - prev.abusive
		out[j].acked += x.acked - prev.acked
	}
	return out
}

// Serving is judged on the normal load's acknowledged records, per window:
// a window in which no normal record was acknowledged, or in which more
// than maxFailedRatio of the normal records that were answered failed, is
// a window not serving.
const (
	servingWindow  = 10 * time.Second
	maxFailedRatio = 0.01
)

// window is one servingWindow of the normal load.
type window struct {
	start, end    time.Duration
	phase         string // the phase at the window's end
	acked, failed int64
}

func (w window) serving() bool {
	return w.acked > 0 && float64(w.failed) <= maxFailedRatio*float64(w.acked+w.failed)
}

func (w window) String() string {
	return fmt.Sprintf("%v-%v (%s): %d acked, %d failed", w.start, w.end, w.phase, w.acked, w.failed)
}

// windows cuts the samples into servingWindow windows (the last, shorter
// one is judged only if it is at least half a window). Pure.
func windows(ss []sample) []window {
	var out []window
	prev := sample{}
	for i, x := range ss {
		if x.at-prev.at < servingWindow && i < len(ss)-1 {
			continue
		}
		if x.at-prev.at >= servingWindow/2 {
			out = append(out, window{start: prev.at, end: x.at, phase: x.phase, acked: x.acked - prev.acked, failed: x.failed - prev.failed})
		}
		prev = x
	}
	return out
}

func summarize(o options, ss []sample, errs map[string]int64) summary {
	s := summary{budget: 2*o.inflight + 512<<20, errors: errs}
	if n := len(ss); n > 0 {
		last := ss[n-1]
		s.duration, s.acked, s.failed, s.consumed, s.abusive = last.at, last.acked, last.failed, last.consumed, last.abusive
	}
	for _, x := range ss {
		s.maxRSS, s.maxFDs = max(s.maxRSS, x.rss), max(s.maxFDs, x.fds)
		if x.rss > s.budget {
			s.overBudget++
		}
		if !x.serving {
			s.probeDown = append(s.probeDown, x.at)
		}
		if !x.ready {
			s.notReady++
		}
	}
	s.calmInflight = calmMinimums(ss)
	s.phases = phaseTotals(ss)
	ws := windows(ss)
	s.windows = len(ws)
	for _, w := range ws {
		if !w.serving() {
			s.notServing = append(s.notServing, w)
		}
	}
	return s
}

// calmMinimums is the least known in-flight bytes of each calm spell
// after the first abusive phase. Pure.
func calmMinimums(ss []sample) []int64 {
	var out []int64
	in, seenAbuse := false, false
	for _, x := range ss {
		switch {
		case x.phase != "calm":
			in, seenAbuse = false, true
		case seenAbuse && x.inflight >= 0 && !in:
			in = true
			out = append(out, x.inflight)
		case in && x.inflight >= 0:
			out[len(out)-1] = min(out[len(out)-1], x.inflight)
		}
	}
	return out
}

// ok reports whether the broker kept to its memory budget and served the
// normal load in every window.
func (s summary) ok() bool {
	return s.overBudget == 0 && len(s.notServing) == 0 && s.windows > 0
}

func (s summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "soak of %v\n", s.duration)
	fmt.Fprintf(&b, "max RSS %.0f MiB, memory budget (GOMEMLIMIT: 2 x --max-inflight-bytes + 512 MiB) %.0f MiB: %s (%d seconds over)\n",
		float64(s.maxRSS)/(1<<20), float64(s.budget)/(1<<20), verdict(s.overBudget == 0), s.overBudget)
	fmt.Fprintf(&b, "max open file handles %d\n", s.maxFDs)
	fmt.Fprintf(&b, "normal load: %d records acknowledged, %d failed, %d consumed; %d abusive requests\n", s.acked, s.failed, s.consumed, s.abusive)
	fmt.Fprintf(&b, "%v windows not serving (no normal record acknowledged, or more than %.0f%% failed): %d of %d\n",
		servingWindow, maxFailedRatio*100, len(s.notServing), s.windows)
	for i, w := range s.notServing {
		if i == 10 {
			fmt.Fprintf(&b, "  ... and %d more\n", len(s.notServing)-i)
			break
		}
		fmt.Fprintf(&b, "  %v\n", w)
	}
	fmt.Fprintf(&b, "seconds without a probe produce answered within 5 s: %d\n", len(s.probeDown))
	fmt.Fprintf(&b, "seconds /readyz said not ready: %d\n", s.notReady)
	for _, p := range s.phases {
		fmt.Fprintf(&b, "phase %s: %d s, %d abusive requests, %d normal records acknowledged (%.0f/s)\n",
			p.name, p.seconds, p.abusive, p.acked, float64(p.acked)/float64(max(p.seconds, 1)))
	}
	if len(s.calmInflight) > 0 {
		fmt.Fprintf(&b, "in-flight bytes still held in each calm spell (least seen): %v\n", s.calmInflight)
	}
	msgs := make([]string, 0, len(s.errors))
	for m := range s.errors {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return s.errors[msgs[i]] > s.errors[msgs[j]] })
	for i, m := range msgs {
		if i == 5 {
			break
		}
		fmt.Fprintf(&b, "normal producer error x%d: %s\n", s.errors[m], m)
	}
	if s.ok() {
		b.WriteString("verdict: PASS\n")
	} else {
		b.WriteString("verdict: FAIL\n")
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "within budget"
	}
	return "OVER BUDGET"
}

// report writes the CSV, the plot and the summary, and fails when the
// broker went over budget, stopped serving or died.
func report(o options, b *brokerProc, ss []sample, errs map[string]int64) error {
	if err := writeCSV(o.out, ss); err != nil {
		return err
	}
	s := summarize(o, ss, errs)
	if err := writePlot(filepath.Join(o.out, "soak.png"), ss, s); err != nil {
		return err
	}
	text := s.String()
	fmt.Print(text)
	if err := os.WriteFile(filepath.Join(o.out, "summary.txt"), []byte(text), 0o644); err != nil {
		return err
	}
	select {
	case err := <-b.done:
		b.done <- err
		return fmt.Errorf("the broker exited during the soak (%v); log in %s", err, b.logPath)
	default:
	}
	if !s.ok() {
		return fmt.Errorf("the broker went over its memory budget or did not serve the normal load (see %s)", o.out)
	}
	return nil
}

// ---- plot ---------------------------------------------------------------------

var (
	bg         = color.RGBA{255, 255, 255, 255}
	axis       = color.RGBA{60, 60, 60, 255}
	rssColor   = color.RGBA{200, 40, 40, 255}
	fdColor    = color.RGBA{30, 90, 200, 255}
	budgetLine = color.RGBA{200, 40, 40, 120}
	downColor  = color.RGBA{0, 0, 0, 255}
	ackColor   = color.RGBA{30, 150, 60, 255}
)

// phaseColors shade the abusive phases.
var phaseColors = map[string]color.RGBA{
	"calm": {255, 255, 255, 255}, "unread-streams": {255, 236, 200, 255}, "compression-bombs": {255, 214, 214, 255},
	"topic-flood": {214, 240, 214, 255}, "slow-consumers": {220, 225, 250, 255}, "greedy-producer": {240, 220, 245, 255},
}

// panel is one chart area and its value range.
type panel struct {
	r    image.Rectangle
	maxY float64
}

func (p panel) point(t, tmax, v float64) image.Point {
	x := p.r.Min.X + int(t/tmax*float64(p.r.Dx()))
	y := p.r.Max.Y - int(v/p.maxY*float64(p.r.Dy()))
	return image.Pt(x, y)
}

// writePlot draws RSS (with the memory budget), open handles and the
// normal load's acknowledged records per second over time, on the phases'
// shading, with the windows not serving marked.
func writePlot(path string, ss []sample, s summary) error {
	const w, h = 1200, 960
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{bg}, image.Point{}, draw.Src)
	if len(ss) == 0 {
		return savePNG(path, img)
	}
	tmax := max(ss[len(ss)-1].at.Seconds(), 1)
	rates := ackRates(ss)
	top := panel{image.Rect(80, 50, w-30, 310), float64(max(s.budget, s.maxRSS)) / (1 << 20) * 1.1}
	mid := panel{image.Rect(80, 370, w-30, 590), float64(s.maxFDs)*1.2 + 10}
	bottom := panel{image.Rect(80, 650, w-30, 870), max(slices.Max(rates), 1) * 1.2}
	for _, p := range []panel{top, mid, bottom} {
		shadePhases(img, p, ss, tmax)
		frame(img, p)
	}
	hline(img, top, float64(s.budget)/(1<<20), budgetLine)
	series(img, top, ss, tmax, rssColor, func(x sample) float64 { return float64(x.rss) / (1 << 20) })
	series(img, mid, ss, tmax, fdColor, func(x sample) float64 { return float64(x.fds) })
	i := 0
	series(img, bottom, ss, tmax, ackColor, func(sample) float64 { i++; return rates[i-1] })
	for _, win := range s.notServing {
		a, b := bottom.point(win.start.Seconds(), tmax, 0), bottom.point(win.end.Seconds(), tmax, 0)
		fill(img, image.Rect(a.X, bottom.r.Max.Y+2, b.X+1, bottom.r.Max.Y+10), downColor)
	}
	label(img, 80, 30, fmt.Sprintf("Broker RSS (MiB, red) and memory budget %.0f MiB (light red); max %.0f MiB", float64(s.budget)/(1<<20), float64(s.maxRSS)/(1<<20)))
	label(img, 80, 355, fmt.Sprintf("Open file handles (blue); max %d", s.maxFDs))
	label(img, 80, 635, fmt.Sprintf("Normal records acknowledged per second (green); %v windows not serving (black marks below): %d of %d",
		servingWindow, len(s.notServing), s.windows))
	axisLabels(img, top, tmax)
	axisLabels(img, mid, tmax)
	axisLabels(img, bottom, tmax)
	legend(img, 80, h-30)
	return savePNG(path, img)
}

// ackRates is the normal records acknowledged in the second before each
// sample. Pure.
func ackRates(ss []sample) []float64 {
	out := make([]float64, len(ss))
	for i := 1; i < len(ss); i++ {
		if dt := (ss[i].at - ss[i-1].at).Seconds(); dt > 0 {
			out[i] = float64(ss[i].acked-ss[i-1].acked) / dt
		}
	}
	return out
}

func shadePhases(img *image.RGBA, p panel, ss []sample, tmax float64) {
	for i, x := range ss {
		c, ok := phaseColors[x.phase]
		if !ok {
			continue
		}
		t0 := 0.0
		if i > 0 {
			t0 = ss[i-1].at.Seconds()
		}
		a, b := p.point(t0, tmax, 0), p.point(x.at.Seconds(), tmax, 0)
		fill(img, image.Rect(a.X, p.r.Min.Y, b.X+1, p.r.Max.Y), c)
	}
}

func frame(img *image.RGBA, p panel) {
	r := p.r
	fill(img, image.Rect(r.Min.X, r.Max.Y, r.Max.X, r.Max.Y+1), axis)
	fill(img, image.Rect(r.Min.X-1, r.Min.Y, r.Min.X, r.Max.Y), axis)
}

func hline(img *image.RGBA, p panel, v float64, c color.RGBA) {
	y := p.point(0, 1, v).Y
	fill(img, image.Rect(p.r.Min.X, y-1, p.r.Max.X, y+1), c)
}

func series(img *image.RGBA, p panel, ss []sample, tmax float64, c color.RGBA, v func(sample) float64) {
	var prev image.Point
	for i, x := range ss {
		pt := p.point(x.at.Seconds(), tmax, max(v(x), 0))
		if i > 0 {
			line(img, prev, pt, c)
		}
		prev = pt
	}
}

// line draws a 2-pixel line from a to b.
func line(img *image.RGBA, a, b image.Point, c color.RGBA) {
	n := max(abs(b.X-a.X), abs(b.Y-a.Y), 1)
	for i := 0; i <= n; i++ {
		x := a.X + (b.X-a.X)*i/n
		y := a.Y + (b.Y-a.Y)*i/n
		fill(img, image.Rect(x, y, x+2, y+2), c)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

func axisLabels(img *image.RGBA, p panel, tmax float64) {
	for i := 0; i <= 4; i++ {
		v := p.maxY * float64(i) / 4
		pt := p.point(0, tmax, v)
		label(img, 10, pt.Y+4, fmt.Sprintf("%7.0f", v))
		t := tmax * float64(i) / 4
		pt = p.point(t, tmax, 0)
		label(img, pt.X-10, p.r.Max.Y+22, fmt.Sprintf("%.0fs", t))
	}
}

func legend(img *image.RGBA, x, y int) {
	for _, name := range []string{"unread-streams", "compression-bombs", "topic-flood", "slow-consumers", "greedy-producer", "calm"} {
		fill(img, image.Rect(x, y-10, x+14, y+2), phaseColors[name])
		fill(img, image.Rect(x, y+2, x+14, y+3), axis)
		label(img, x+18, y, name)
		x += 18 + 7*len(name) + 20
	}
}

func label(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(axis), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func savePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
