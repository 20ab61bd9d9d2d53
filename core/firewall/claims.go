package firewall

import (
	"slices"
	"strconv"
	"strings"
)

// Both backends keep grants as kernel entries (an iptables rule, an
// nftables set element) that each carry a comment naming the grants that
// want them: "sesame id=ssh-1 until=1764280950 id=web-7 until=1764281010".
// Two grants that open the same port to the same address share one entry
// rather than duplicating it, and revoking one leaves the entry to the
// other. The planning here is pure; the backends only apply its changes.

// claim says that grant ID wants an entry alive until Until (Unix
// seconds, rounded up).
type claim struct {
	ID    string
	Until int64
}

const (
	commentPrefix = "sesame"
	// maxCommentLen fits both kernels: nftables element userdata holds a
	// NUL-terminated string behind a one-byte length (254 characters), an
	// iptables comment match 255.
	maxCommentLen = 254
)

// formatComment renders claims, which must be sorted by ID.
func formatComment(cs []claim) string {
	var b strings.Builder
	b.WriteString(commentPrefix)
	for _, c := range cs {
		b.WriteString(" id=")
		b.WriteString(c.ID)
		b.WriteString(" until=")
		b.WriteString(strconv.FormatInt(c.Until, 10))
	}
	return b.String()
}

// parseComment reads a comment made by formatComment. ok is false for a
// comment Sesame did not write (the entry is then left alone).
func parseComment(s string) (cs []claim, ok bool) {
	f := strings.Fields(s)
	if len(f) < 3 || f[0] != commentPrefix || len(f)%2 != 1 {
		return nil, false
	}
	for i := 1; i < len(f); i += 2 {
		id, ok1 := strings.CutPrefix(f[i], "id=")
		us, ok2 := strings.CutPrefix(f[i+1], "until=")
		if !ok1 || !ok2 || !validID(id) {
			return nil, false
		}
		u, err := strconv.ParseInt(us, 10, 64)
		if err != nil || u <= 0 {
			return nil, false
		}
		cs = mergeClaims(cs, claim{ID: id, Until: u})
	}
	return cs, true
}

// mergeClaims adds claims to cs, keeping it sorted by ID with one claim per
// ID (the later Until wins).
func mergeClaims(cs []claim, add ...claim) []claim {
	for _, a := range add {
		i, found := slices.BinarySearchFunc(cs, a.ID, func(c claim, id string) int { return strings.Compare(c.ID, id) })
		switch {
		case !found:
			cs = slices.Insert(cs, i, a)
		case a.Until > cs[i].Until:
			cs[i].Until = a.Until
		}
	}
	return cs
}

func withoutClaim(cs []claim, id string) []claim {
	return slices.DeleteFunc(slices.Clone(cs), func(c claim) bool { return c.ID == id })
}
