package main

import (
	"reflect"
	"strings"

	"github.com/sesame-knock/sesame/core/config"
)

// isDefault asks package config whether "key = value" in the given
// section (options or a door) sets what leaving the key out sets: then
// the shipped file shows the key's default, else an example. A bare key
// (UseSyslog) and a door's sequence are never defaults.
func isDefault(global bool, key string, value string, hasValue bool) bool {
	if !hasValue || strings.EqualFold(key, "sequence") {
		return false
	}
	line := key + " = " + value + "\n"
	base, with := "[options]\n[d]\nsequence = 1\n", "[options]\n"+line+"[d]\nsequence = 1\n"
	if !global {
		base, with = "[d]\nsequence = 1\n", "[d]\nsequence = 1\n"+line
	}
	a, err1 := config.Parse("a", []byte(base))
	b, err2 := config.Parse("b", []byte(with))
	if err1 != nil || err2 != nil {
		return false
	}
	return reflect.DeepEqual(settings(a), settings(b))
}

// settings is what a config sets, without where it set it.
func settings(c *config.Config) []any {
	o := c.Options
	o.Lines = config.Lines{}
	d := *c.Doors[0]
	d.Lines, d.File, d.Line = config.Lines{}, "", 0
	return []any{o, d}
}

// defaultPrefix starts the paragraph that states a key's default in the
// shipped file's comments ("Default: `25`." or "Default: none.").
const defaultPrefix = "Default: "
