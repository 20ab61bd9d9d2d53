package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sesame-knock/sesame/core/spa"
)

// fwknopMode is libfko's wire format (package spa).
type fwknopMode struct{ o *spaOptions }

func (m fwknopMode) packet(r spaRequest, verbose io.Writer) ([]byte, error) {
	o := m.o
	if len(o.key) == 0 {
		return nil, errors.New("no Rijndael key: give --key-base64-rijndael or --key-rijndael, or KEY_BASE64 in the rc file (sesame spa --key-gen makes keys)")
	}
	if o.useHMAC && len(o.hmacKey) == 0 {
		return nil, errors.New("--use-hmac without an HMAC key: give --key-base64-hmac, or HMAC_KEY_BASE64 in the rc file")
	}
	k := spa.Keys{Key: o.key, Mode: o.mode, HMAC: o.hmacType}
	if len(o.hmacKey) > 0 {
		if o.mode == spa.Legacy {
			return nil, errors.New("legacy encryption mode cannot be combined with an HMAC (as in fwknop)")
		}
		k.HMACKey = o.hmacKey
	}
	msg := spa.Message{User: r.User, Timestamp: r.Timestamp, Type: spa.AccessMsg,
		Access: r.Allow + "," + r.Access, ClientTimeout: r.Timeout, Digest: o.digestType}
	e, err := spa.Encode(msg, k, nil)
	if err != nil {
		return nil, err
	}
	if verbose != nil {
		dumpFields(verbose, msg, k, e)
	}
	return e.Packet, nil
}

// saved: an fwknop packet is base64 text already.
func (fwknopMode) saved(pkt []byte) []byte { return pkt }

// dumpFields prints a packet the way fwknop -v does, with its labels.
func dumpFields(w io.Writer, m spa.Message, k spa.Keys, e *spa.Encoded) {
	f := strings.Split(e.Fields, ":")
	typ, _ := strconv.Atoi(f[4])
	hmacType := "<NULL>"
	if e.HMAC != "" {
		hmacType = k.HMAC.String()
	}
	timeout := "0"
	if m.ClientTimeout > 0 {
		timeout = strconv.Itoa(m.ClientTimeout)
	}
	fmt.Fprintf(w, "SPA Field Values:\n=================\n")
	for _, kv := range [][2]string{
		{"Random Value", f[0]}, {"Username", m.User}, {"Timestamp", f[2]}, {"FKO Version", f[3]},
		{"Message Type", fmt.Sprintf("%d (%s msg)", typ, spa.MsgType(typ))}, {"Message String", m.Access},
		{"Nat Access", "<NULL>"}, {"Server Auth", "<NULL>"}, {"Client Timeout", timeout},
		{"Digest Type", m.Digest.String()}, {"HMAC Type", hmacType}, {"Encryption Type", "Rijndael"},
		{"Encryption Mode", k.Mode.String()}, {"Encoded Data", e.Fields}, {"SPA Data Digest", e.Digest},
		{"HMAC", e.HMAC}, {"Final SPA Data", string(e.Packet)},
	} {
		fmt.Fprintf(w, "%15s: %s\n", kv[0], kv[1])
	}
	fmt.Fprintln(w)
}
