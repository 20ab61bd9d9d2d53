package main

import (
	"reflect"
	"testing"
)

func TestParseSS(t *testing.T) {
	out := "Netid Recv-Q Send-Q Local Address:Port    Peer Address:PortProcess\n" +
		"p_raw 0      0                  *:sesame0             *     users:((\"knockd\",pid=27906,fd=5)) ino:2276765 sk:1888\n" +
		"\tver:2 cpy_thresh:0 flags( running auxdata )\n" +
		"\tring_rx(blk_size:262144,blk_nr:8,frm_size:262144,frm_nr:8,tmo:50,features:0x0) skmem:(r0,rb212992,t0,tb212992,f0,w0,o2272,bl0,d0)\n" +
		"p_raw 0      0                  *:sesame0             *     users:((\"sesamed\",pid=27907,fd=9)) ino:2274877 sk:1889\n" +
		"\tver:0 cpy_thresh:0 flags( running auxdata ) skmem:(r0,rb212992,t0,tb212992,f0,w0,o2120,bl0,d253409)        \n" +
		"p_raw 0      0                  *:*             *     ino:1 sk:2\n"
	got := parseSS(out)
	want := []pktSock{
		{PID: 27906, Version: 2, Ring: true, BlockKiB: 256, Blocks: 8, TimeoutMS: 50, RcvBuf: 212992, Drops: 0},
		{PID: 27907, Version: 0, RcvBuf: 212992, Drops: 253409},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if d := got[0].describe(); d != "TPACKET_V3 ring of 8 × 256 KiB, block timeout 50 ms" {
		t.Errorf("describe: %q", d)
	}
	if d := got[1].describe(); d != "recvmsg on a packet socket, receive buffer 208 KiB" {
		t.Errorf("describe: %q", d)
	}
}
