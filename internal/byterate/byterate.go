// Package byterate reads byte rates such as "10MB/s" or "512KiB/s".
package byterate

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units are case-sensitive: "Mb" (megabits) is not "MB".
var units = map[string]float64{
	"": 1, "B": 1,
	"KB": 1e3, "MB": 1e6, "GB": 1e9,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
}

// Parse reads a byte rate in bytes per second: a number and a unit, B, KB,
// MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), the unit and
// "/s" optional ("10MB/s", "512KiB", "1000"). It refuses negative numbers,
// unknown units and rates past 1 PB/s; 0 passes (callers say whether it
// means anything).
func Parse(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("byte rate %q: want a positive number, not a negative one", s)
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("byte rate %q: unknown unit %q (use B, KB, MB, GB, KiB, MiB or GiB per second, like 10MB/s)", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || math.IsNaN(v) {
		return 0, fmt.Errorf("byte rate %q: want a positive number and a unit, like 10MB/s or 512KiB/s", s)
	}
	if r := v * mult; r > 1e15 {
		return 0, fmt.Errorf("byte rate %q: at most 1 PB/s", s)
	}
	return int64(v * mult), nil
}
