package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Doc
		err  string
	}{
		{
			name: "intro, entries, notes and live keys",
			in:   "# Title line.\n#\n# Second\n# paragraph.\n\n[options]\n\t# Watch these.\n\t#Interface = eth0\n\n\t# A note.\n\n\t# Two keys,\n\t# one text.\n\t#UseSyslog\n\tLogFile = /x\n[door]\n\tsequence = 1,2\n",
			want: &Doc{
				Intro: []string{"Title line.", "Second paragraph."},
				Sections: []Section{
					{Name: "options", Line: 6, Entries: []Entry{
						{Keys: []KeyLine{{Key: "Interface", Value: "eth0", HasValue: true, Commented: true, Line: 8}}, Text: []string{"Watch these."}},
						{Text: []string{"A note."}},
						{Keys: []KeyLine{{Key: "UseSyslog", Commented: true, Line: 14}, {Key: "LogFile", Value: "/x", HasValue: true, Line: 15}}, Text: []string{"Two keys, one text."}},
					}},
					{Name: "door", Line: 16, Entries: []Entry{
						{Keys: []KeyLine{{Key: "sequence", Value: "1,2", HasValue: true, Line: 17}}},
					}},
				},
			},
		},
		{name: "prose glued under a key", in: "[options]\n#A = 1\n# text\n", err: "line 3: prose after key lines"},
		{name: "commented prose without a space", in: "[options]\n#not a key line\n", err: "line 2: \"#not a key line\" is neither prose"},
		{name: "key before any section", in: "#A = 1\n", err: "line 1: key A before the first section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestUncommented(t *testing.T) {
	in := "# prose # stays\n[options]\n\t#Interface = eth0\n\t#UseSyslog\n\t# Open = prose, not a key\n"
	want := "# prose # stays\n[options]\nInterface = eth0\nUseSyslog\n\t# Open = prose, not a key\n"
	if got := string(Uncommented([]byte(in))); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"%IP% one_time_sequences [options]": `%IP% one\_time\_sequences \[options\]`,
		"run `sesame check a_b` *now*":      "run `sesame check a_b` \\*now\\*",
		`a\b`:                               `a\\b`,
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
