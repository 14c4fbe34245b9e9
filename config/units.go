package config

import (
	"strings"
	"time"
)

var unitNames = [...]string{
	UnitSecond: "second",
	UnitMinute: "minute",
	UnitHour:   "hour",
	UnitDay:    "day",
	UnitMonth:  "month",
	UnitYear:   "year",
	UnitWeek:   "week",
}

// unitList is the order in which units are named in error messages.
const unitList = "second, minute, hour, day, week, month or year"

// String returns the configuration name of u ("minute"), or "unknown".
func (u Unit) String() string {
	if u > UnitUnknown && int(u) < len(unitNames) {
		return unitNames[u]
	}
	return "unknown"
}

// Duration is the length of one u: a month is 30 days and a year 365 days, as in envoyproxy/ratelimit.
// UnitUnknown has no length (0).
func (u Unit) Duration() time.Duration {
	switch u {
	case UnitSecond:
		return time.Second
	case UnitMinute:
		return time.Minute
	case UnitHour:
		return time.Hour
	case UnitDay:
		return 24 * time.Hour
	case UnitWeek:
		return 7 * 24 * time.Hour
	case UnitMonth:
		return 30 * 24 * time.Hour
	case UnitYear:
		return 365 * 24 * time.Hour
	}
	return 0
}

// parseUnit accepts a unit name in any letter case, like envoyproxy/ratelimit.
func parseUnit(s string) (Unit, bool) {
	for u, name := range unitNames {
		if name != "" && strings.EqualFold(s, name) {
			return Unit(u), true
		}
	}
	return UnitUnknown, false
}

// unitFor describes a custom window in Envoy's terms: the largest unit that divides w, and how many of it
// make w. A window that is not a whole number of seconds is reported as UnitSecond with multiplier 0.
func unitFor(w time.Duration) (Unit, uint32) {
	if w <= 0 || w%time.Second != 0 {
		return UnitSecond, 0
	}
	for _, u := range [...]Unit{UnitYear, UnitMonth, UnitWeek, UnitDay, UnitHour, UnitMinute, UnitSecond} {
		if d := u.Duration(); w%d == 0 {
			return u, uint32(w / d)
		}
	}
	return UnitSecond, 0
}
