// Package nftrec stands in for the kernel's nf_tables netlink interface in
// tests that need no root: a google/nftables Conn dialled through a
// Recorder sends nothing to a kernel, and the Recorder keeps every batch
// the Conn flushes, printed in a stable text form a test compares with a
// golden file, and the kind of every read it asked. It answers every read as an empty kernel would (a named
// table: ENOENT; a listing: nothing), so code that inspects before it
// writes takes its "nothing installed yet" path. It does not model a kernel beyond that;
// repairs of existing objects are tested against the real kernel in
// network namespaces.
package nftrec

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// Recorder records the batches of the Conns it dials. Its zero value is
// ready to use; it may be used from several goroutines.
type Recorder struct {
	mu      sync.Mutex // guards the fields below
	batches [][]netlink.Message
	reads   []string // what each read asked for, as Reads prints it
	gen     uint32   // batches flushed and foreign commits, never reset
}

// Dial returns a Conn whose messages go to r instead of the kernel; its
// signature fits a backend's dial hook.
func (r *Recorder) Dial() (*nftables.Conn, error) {
	return nftables.New(nftables.WithTestDial(r.answer))
}

// answer is the nltest.Func behind every Conn: listings are empty, other
// reads get ENOENT, batches are recorded and acknowledged message by
// message.
func (r *Recorder) answer(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) == 0 {
		return nil, nil // a Receive after the acks were delivered
	}
	if h := req[0].Header; h.Type != netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) {
		r.mu.Lock()
		r.reads = append(r.reads, readName(req[0]))
		r.mu.Unlock()
		if h.Flags&netlink.Dump != 0 {
			return []netlink.Message{{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi,
				Sequence: h.Sequence, PID: h.PID}, Data: []byte{0, 0, 0, 0}}}, nil
		}
		return nltest.Error(int(unix.ENOENT), req)
	}
	r.mu.Lock()
	r.batches = append(r.batches, req)
	r.gen++
	r.mu.Unlock()
	var acks []netlink.Message
	for _, m := range req {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			acks = append(acks, netlink.Message{
				Header: netlink.Header{Length: 4, Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID},
				Data:   []byte{0, 0, 0, 0},
			})
		}
	}
	return acks, nil
}

// Batches is how many batches were flushed since the last Reset.
func (r *Recorder) Batches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches)
}

// Generation stands in for the kernel's nf_tables generation: like it,
// it moves by one for every batch flushed (the recorder's kernel commits
// them all) and for every Commit, and Reset leaves it. Its signature fits
// a backend's generation hook.
func (r *Recorder) Generation() (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen, nil
}

// Commit moves the generation as a transaction by someone else would
// (an nft command, firewalld), without recording a batch.
func (r *Recorder) Commit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
}

// Reads are the reads asked since the last Reset, in order, one per
// request: the message kind (GETTABLE, GETCHAIN, GETRULE, GETSET,
// GETSETELEM) and, for GETSETELEM, the set's name.
func (r *Recorder) Reads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reads...)
}

var readNames = map[uint16]string{
	unix.NFT_MSG_GETTABLE: "GETTABLE", unix.NFT_MSG_GETCHAIN: "GETCHAIN", unix.NFT_MSG_GETRULE: "GETRULE",
	unix.NFT_MSG_GETSET: "GETSET", unix.NFT_MSG_GETSETELEM: "GETSETELEM", unix.NFT_MSG_GETGEN: "GETGEN",
}

func readName(m netlink.Message) string {
	kind := uint16(m.Header.Type) & 0xff
	name, ok := readNames[kind]
	if !ok || uint16(m.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return fmt.Sprintf("type %#x", uint16(m.Header.Type))
	}
	if kind != unix.NFT_MSG_GETSETELEM || len(m.Data) < 4 {
		return name
	}
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return name
	}
	for _, a := range attrs {
		if a.Type == unix.NFTA_SET_ELEM_LIST_SET {
			return name + " " + strings.TrimRight(string(a.Data), "\x00")
		}
	}
	return name
}

// Reset forgets what was recorded.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = nil
	r.reads = nil
}

// Text prints every batch since the last Reset, one message per line and
// one attribute per indented line below it. Set IDs, which google/nftables
// draws from a process-wide counter, are numbered by first appearance
// (#1, #2...), so the text does not depend on which test ran first.
func (r *Recorder) Text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := printer{ids: map[string]int{}}
	for _, b := range r.batches {
		for _, m := range b {
			p.message(m)
		}
	}
	return p.b.String()
}

type printer struct {
	b   strings.Builder
	ids map[string]int // set ID bytes -> ordinal
}

var msgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_DELTABLE: "DELTABLE",
	unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_DELCHAIN: "DELCHAIN",
	unix.NFT_MSG_NEWRULE: "NEWRULE", unix.NFT_MSG_DELRULE: "DELRULE",
	unix.NFT_MSG_NEWSET: "NEWSET", unix.NFT_MSG_DELSET: "DELSET",
	unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_DELSETELEM: "DELSETELEM",
}

// attrNames name the top-level attributes of each message kind.
var attrNames = map[uint16]map[uint16]string{
	unix.NFT_MSG_NEWTABLE: {unix.NFTA_TABLE_NAME: "name", unix.NFTA_TABLE_FLAGS: "flags"},
	unix.NFT_MSG_NEWCHAIN: {unix.NFTA_CHAIN_TABLE: "table", unix.NFTA_CHAIN_NAME: "name", unix.NFTA_CHAIN_HOOK: "hook",
		unix.NFTA_CHAIN_POLICY: "policy", unix.NFTA_CHAIN_TYPE: "type"},
	unix.NFT_MSG_NEWRULE: {unix.NFTA_RULE_TABLE: "table", unix.NFTA_RULE_CHAIN: "chain", unix.NFTA_RULE_EXPRESSIONS: "exprs",
		unix.NFTA_RULE_USERDATA: "userdata", unix.NFTA_RULE_POSITION: "position", unix.NFTA_RULE_HANDLE: "handle"},
	unix.NFT_MSG_NEWSET: {unix.NFTA_SET_TABLE: "table", unix.NFTA_SET_NAME: "name", unix.NFTA_SET_FLAGS: "flags",
		unix.NFTA_SET_KEY_TYPE: "key_type", unix.NFTA_SET_KEY_LEN: "key_len", unix.NFTA_SET_ID: "id",
		unix.NFTA_SET_TIMEOUT: "timeout", unix.NFTA_SET_USERDATA: "userdata", unix.NFTA_SET_DESC: "desc"},
	unix.NFT_MSG_NEWSETELEM: {unix.NFTA_SET_ELEM_LIST_TABLE: "table", unix.NFTA_SET_ELEM_LIST_SET: "set",
		unix.NFTA_SET_ELEM_LIST_ELEMENTS: "elements", unix.NFTA_SET_ELEM_LIST_SET_ID: "set_id"},
}

func init() {
	// Deletions carry the attributes of the matching creation.
	for del, add := range map[uint16]uint16{unix.NFT_MSG_DELTABLE: unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELCHAIN: unix.NFT_MSG_NEWCHAIN,
		unix.NFT_MSG_DELRULE: unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELSET: unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSETELEM: unix.NFT_MSG_NEWSETELEM} {
		attrNames[del] = attrNames[add]
	}
}

// Attribute types whose value is a set ID, per message kind.
var setIDAttr = map[uint16]uint16{
	unix.NFT_MSG_NEWSET: unix.NFTA_SET_ID, unix.NFT_MSG_DELSET: unix.NFTA_SET_ID,
	unix.NFT_MSG_NEWSETELEM: unix.NFTA_SET_ELEM_LIST_SET_ID, unix.NFT_MSG_DELSETELEM: unix.NFTA_SET_ELEM_LIST_SET_ID,
}

func (p *printer) message(m netlink.Message) {
	switch t := uint16(m.Header.Type); t {
	case unix.NFNL_MSG_BATCH_BEGIN:
		p.b.WriteString("BATCH\n")
		return
	case unix.NFNL_MSG_BATCH_END:
		p.b.WriteString("END\n")
		return
	}
	kind := uint16(m.Header.Type) & 0xff
	name, ok := msgNames[kind]
	if !ok || uint16(m.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES {
		name = fmt.Sprintf("type %#x", uint16(m.Header.Type))
	}
	if len(m.Data) < 4 {
		fmt.Fprintf(&p.b, "%s flags %#x short %x\n", name, uint16(m.Header.Flags), m.Data)
		return
	}
	fmt.Fprintf(&p.b, "%s family %d flags %#x\n", name, m.Data[0], uint16(m.Header.Flags))
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		fmt.Fprintf(&p.b, "  undecodable %x\n", m.Data[4:])
		return
	}
	for _, a := range attrs {
		typ := a.Type &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		label := attrNames[kind][typ]
		if label == "" {
			label = fmt.Sprint(typ)
		}
		switch {
		case setIDAttr[kind] == typ:
			fmt.Fprintf(&p.b, "  %s %s\n", label, p.setID(a.Data))
		case label == "userdata":
			fmt.Fprintf(&p.b, "  %s %s\n", label, userData(a.Data))
		case label == "elements":
			p.elements(a.Data)
		default:
			p.attr("  ", label, a)
		}
	}
}

func (p *printer) setID(b []byte) string {
	if strings.Trim(string(b), "\x00") == "" {
		return "0"
	}
	n, ok := p.ids[string(b)]
	if !ok {
		n = len(p.ids) + 1
		p.ids[string(b)] = n
	}
	return fmt.Sprintf("#%d", n)
}

// elements prints a set element list: key, timeout and comment by name.
func (p *printer) elements(b []byte) {
	els, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		fmt.Fprintf(&p.b, "  elements %x\n", b)
		return
	}
	for _, el := range els {
		p.b.WriteString("  element\n")
		fields, err := netlink.UnmarshalAttributes(el.Data)
		if err != nil {
			fmt.Fprintf(&p.b, "    %x\n", el.Data)
			continue
		}
		for _, f := range fields {
			switch f.Type &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
			case unix.NFTA_SET_ELEM_KEY:
				p.attr("    ", "key", f)
			case unix.NFTA_SET_ELEM_TIMEOUT:
				if len(f.Data) == 8 {
					var ms uint64
					for _, c := range f.Data {
						ms = ms<<8 | uint64(c)
					}
					fmt.Fprintf(&p.b, "    timeout %dms\n", ms)
				} else {
					fmt.Fprintf(&p.b, "    timeout %x\n", f.Data)
				}
			case unix.NFTA_SET_ELEM_USERDATA:
				fmt.Fprintf(&p.b, "    userdata %s\n", userData(f.Data))
			default:
				p.attr("    ", fmt.Sprint(f.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER)), f)
			}
		}
	}
}

// attr prints one attribute: nested ones attribute by attribute, strings
// quoted, everything else in hex.
func (p *printer) attr(indent, label string, a netlink.Attribute) {
	if a.Type&unix.NLA_F_NESTED != 0 {
		if inner, err := netlink.UnmarshalAttributes(a.Data); err == nil && len(inner) > 0 {
			fmt.Fprintf(&p.b, "%s%s\n", indent, label)
			for _, in := range inner {
				p.attr(indent+"  ", fmt.Sprint(in.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER)), in)
			}
			return
		}
	}
	if s, ok := cString(a.Data); ok {
		fmt.Fprintf(&p.b, "%s%s %q\n", indent, label, s)
		return
	}
	fmt.Fprintf(&p.b, "%s%s %s\n", indent, label, hex.EncodeToString(a.Data))
}

// cString reads a NUL-terminated printable string.
func cString(b []byte) (string, bool) {
	if len(b) < 2 || b[len(b)-1] != 0 {
		return "", false
	}
	for _, c := range b[:len(b)-1] {
		if c < 0x20 || c > 0x7e {
			return "", false
		}
	}
	return string(b[:len(b)-1]), true
}

// userData prints the comment a rule or element carries, or hex.
func userData(b []byte) string {
	if s, ok := userdata.GetString(b, userdata.TypeComment); ok {
		return fmt.Sprintf("comment %q", s)
	}
	return hex.EncodeToString(b)
}

// Match compares Text with the golden file at path and reports the first
// line that differs; with update it writes Text to the file instead.
func (r *Recorder) Match(t testing.TB, path string, update bool) {
	t.Helper()
	got := r.Text()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	want := string(raw)
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	i := 0
	for i < len(g) && i < len(w) && g[i] == w[i] {
		i++
	}
	from := max(0, i-3)
	t.Errorf("netlink messages differ from %s at line %d:\ngot:\n%s\nwant:\n%s", path, i+1,
		strings.Join(g[from:min(len(g), i+4)], "\n"), strings.Join(w[from:min(len(w), i+4)], "\n"))
}
