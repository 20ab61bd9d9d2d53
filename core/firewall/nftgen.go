package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
)

// The NFT_MSG_GETGEN request and the parsing of its reply (nftgen_linux.go
// sends it). Constants are spelled out so that the parser builds and is
// fuzzed everywhere.

const (
	nlmsgHdrLen      = 16
	nlmsgError       = 2 // NLMSG_ERROR
	nlmRequest       = 1 // NLM_F_REQUEST
	nfnlSubsysNFT    = 10
	nftMsgGetGen     = 16
	nftMsgNewGen     = 15
	nftaGenID        = 1
	nfgenMsgLen      = 4
	nlaHdrLen        = 4
	nlaTypeMask      = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
	nfnetlinkVersion = 0
)

// genRequest is an NFT_MSG_GETGEN request for any family.
func genRequest(seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+nfgenMsgLen)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], nfnlSubsysNFT<<8|nftMsgGetGen)
	binary.NativeEndian.PutUint16(b[6:], nlmRequest)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b[nlmsgHdrLen] = 0 // AF_UNSPEC
	b[nlmsgHdrLen+1] = nfnetlinkVersion
	return b
}

var errBadGenReply = errors.New("malformed NFT_MSG_NEWGEN reply")

// parseGenReply reads the kernel's answer to genRequest(seq): the
// generation ID, or the error the kernel returned.
func parseGenReply(b []byte, seq uint32) (uint32, error) {
	if len(b) < nlmsgHdrLen {
		return 0, fmt.Errorf("%w: %d bytes", errBadGenReply, len(b))
	}
	n := binary.NativeEndian.Uint32(b[0:])
	typ := binary.NativeEndian.Uint16(b[4:])
	if n < nlmsgHdrLen || int(n) > len(b) {
		return 0, fmt.Errorf("%w: length %d of %d bytes", errBadGenReply, n, len(b))
	}
	if got := binary.NativeEndian.Uint32(b[8:]); got != seq {
		return 0, fmt.Errorf("%w: sequence %d, want %d", errBadGenReply, got, seq)
	}
	body := b[nlmsgHdrLen:n]
	if typ == nlmsgError {
		if len(body) < 4 {
			return 0, fmt.Errorf("%w: short error", errBadGenReply)
		}
		code := int32(binary.NativeEndian.Uint32(body))
		if code == 0 {
			return 0, fmt.Errorf("%w: acknowledgement without a generation", errBadGenReply)
		}
		return 0, syscall.Errno(-code)
	}
	if typ != nfnlSubsysNFT<<8|nftMsgNewGen {
		return 0, fmt.Errorf("%w: message type %#x", errBadGenReply, typ)
	}
	if len(body) < nfgenMsgLen {
		return 0, fmt.Errorf("%w: no nfgenmsg", errBadGenReply)
	}
	attrs := body[nfgenMsgLen:]
	for len(attrs) >= nlaHdrLen {
		alen := int(binary.NativeEndian.Uint16(attrs[0:]))
		atyp := binary.NativeEndian.Uint16(attrs[2:]) & nlaTypeMask
		if alen < nlaHdrLen || alen > len(attrs) {
			return 0, fmt.Errorf("%w: attribute length %d", errBadGenReply, alen)
		}
		if atyp == nftaGenID {
			if alen != nlaHdrLen+4 {
				return 0, fmt.Errorf("%w: generation of %d bytes", errBadGenReply, alen-nlaHdrLen)
			}
			return binary.BigEndian.Uint32(attrs[nlaHdrLen:]), nil
		}
		adv := (alen + 3) &^ 3
		if adv > len(attrs) {
			break
		}
		attrs = attrs[adv:]
	}
	return 0, fmt.Errorf("%w: no generation attribute", errBadGenReply)
}
