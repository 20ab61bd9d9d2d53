package nftrec

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// A batch is recorded as the Conn flushed it, with set IDs numbered by
// appearance whatever google/nftables' process-wide counter says; reads
// see an empty kernel.
func TestRecorder(t *testing.T) {
	r := &Recorder{}
	c, err := r.Dial()
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: "t"}
	if _, err := c.ListTableOfFamily("t", nftables.TableFamilyINet); !errors.Is(err, unix.ENOENT) {
		t.Errorf("named table: %v, want ENOENT", err)
	}
	if chains, err := c.ListChains(); err != nil || len(chains) != 0 {
		t.Errorf("chains %v, %v; want none", chains, err)
	}
	if _, err := c.GetSetElements(&nftables.Set{Table: table, Name: "s"}); err != nil {
		t.Errorf("elements: %v, want none", err)
	}
	if got, want := r.Reads(), []string{"GETTABLE", "GETCHAIN", "GETSETELEM s"}; !slices.Equal(got, want) {
		t.Errorf("reads %q, want %q", got, want)
	}
	c.AddTable(table)
	s := &nftables.Set{Table: table, Name: "s", KeyType: nftables.TypeInetService, ID: 4242}
	if err := c.AddSet(s, []nftables.SetElement{{Key: []byte{0, 22}}}); err != nil {
		t.Fatal(err)
	}
	c.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: "c"}, UserData: []byte{0, 3, 'h', 'i', 0}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := r.Batches(); n != 1 {
		t.Fatalf("%d batches, want 1", n)
	}
	r.Commit()
	if g, _ := r.Generation(); g != 2 {
		t.Errorf("generation %d after a batch and a commit, want 2", g)
	}
	got := r.Text()
	for _, want := range []string{
		"BATCH\nNEWTABLE family 1 flags 0x405\n  name \"t\"\n",
		"NEWSET family 1 flags 0x405\n  table \"t\"\n  name \"s\"\n",
		"  id #1\n",
		"NEWSETELEM family 1 flags 0x405\n",
		"  set_id #1\n  table \"t\"\n  element\n    key\n      1 0016\n",
		"NEWRULE family 1",
		"  userdata comment \"hi\"\nEND\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("recorded text lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "4242") || strings.Contains(got, "00001092") {
		t.Errorf("raw set ID printed:\n%s", got)
	}
	r.Reset()
	if r.Batches() != 0 || r.Text() != "" || len(r.Reads()) != 0 {
		t.Error("Reset kept batches or reads")
	}
	if g, _ := r.Generation(); g != 2 {
		t.Errorf("generation %d after Reset, want 2 still", g)
	}
}
