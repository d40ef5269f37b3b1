package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
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
	maxFDs            int
	notServing        []time.Duration
	notReady          int
	acked, failed     int64
	consumed, abusive int64
}

func summarize(o options, ss []sample) summary {
	s := summary{budget: 2*o.inflight + 512<<20}
	if n := len(ss); n > 0 {
		last := ss[n-1]
		s.duration, s.acked, s.failed, s.consumed, s.abusive = last.at, last.acked, last.failed, last.consumed, last.abusive
	}
	for _, x := range ss {
		s.maxRSS, s.maxFDs = max(s.maxRSS, x.rss), max(s.maxFDs, x.fds)
		if !x.serving {
			s.notServing = append(s.notServing, x.at)
		}
		if !x.ready {
			s.notReady++
		}
	}
	return s
}

func (s summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "soak of %v\n", s.duration)
	fmt.Fprintf(&b, "max RSS %.0f MiB, memory budget (GOMEMLIMIT: 2 x --max-inflight-bytes + 512 MiB) %.0f MiB: %s\n",
		float64(s.maxRSS)/(1<<20), float64(s.budget)/(1<<20), verdict(s.maxRSS <= s.budget))
	fmt.Fprintf(&b, "max open file handles %d\n", s.maxFDs)
	fmt.Fprintf(&b, "seconds not serving (no produce answered within 5 s): %d %v\n", len(s.notServing), s.notServing)
	fmt.Fprintf(&b, "seconds /readyz said not ready: %d\n", s.notReady)
	fmt.Fprintf(&b, "normal load: %d records acknowledged, %d failed, %d consumed; %d abusive requests\n", s.acked, s.failed, s.consumed, s.abusive)
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
func report(o options, b *brokerProc, ss []sample) error {
	if err := writeCSV(o.out, ss); err != nil {
		return err
	}
	s := summarize(o, ss)
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
	if s.maxRSS > s.budget || len(s.notServing) > 0 {
		return fmt.Errorf("the broker went over its memory budget or stopped serving (see %s)", o.out)
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

// writePlot draws RSS (with the memory budget) and open handles over
// time, on the phases' shading, with the seconds not serving marked.
func writePlot(path string, ss []sample, s summary) error {
	const w, h = 1200, 700
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{bg}, image.Point{}, draw.Src)
	if len(ss) == 0 {
		return savePNG(path, img)
	}
	tmax := max(ss[len(ss)-1].at.Seconds(), 1)
	top := panel{image.Rect(80, 50, w-30, 330), float64(max(s.budget, s.maxRSS)) / (1 << 20) * 1.1}
	bottom := panel{image.Rect(80, 390, w-30, 640), float64(s.maxFDs)*1.2 + 10}
	for _, p := range []panel{top, bottom} {
		shadePhases(img, p, ss, tmax)
		frame(img, p)
	}
	hline(img, top, float64(s.budget)/(1<<20), budgetLine)
	series(img, top, ss, tmax, rssColor, func(x sample) float64 { return float64(x.rss) / (1 << 20) })
	series(img, bottom, ss, tmax, fdColor, func(x sample) float64 { return float64(x.fds) })
	for _, x := range ss {
		if !x.serving {
			pt := bottom.point(x.at.Seconds(), tmax, 0)
			fill(img, image.Rect(pt.X-1, bottom.r.Max.Y+2, pt.X+2, bottom.r.Max.Y+10), downColor)
		}
	}
	label(img, 80, 30, fmt.Sprintf("Broker RSS (MiB, red) and memory budget %.0f MiB (light red); max %.0f MiB", float64(s.budget)/(1<<20), float64(s.maxRSS)/(1<<20)))
	label(img, 80, 375, fmt.Sprintf("Open file handles (blue); max %d. Seconds not serving (black marks below): %d", s.maxFDs, len(s.notServing)))
	axisLabels(img, top, tmax)
	axisLabels(img, bottom, tmax)
	legend(img, 80, h-30)
	return savePNG(path, img)
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
