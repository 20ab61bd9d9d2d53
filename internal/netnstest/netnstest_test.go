package netnstest

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestPairConnects(t *testing.T) {
	p := NewPair(t)
	out := p.Server.MustRun("ip", "-br", "addr", "show", ServerIf)
	if !strings.Contains(out, ServerAddr4.String()) || !strings.Contains(out, ServerAddr6.String()) {
		t.Fatalf("server addresses missing: %s", out)
	}
	var ln net.Listener
	if err := p.Server.Do(func() (err error) {
		ln, err = net.Listen("tcp", "[::]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, host := range []string{ServerAddr4.String(), "[" + ServerAddr6.String() + "]"} {
		err := p.Client.Do(func() error {
			c, err := net.Dial("tcp", host+":"+strconv.Itoa(port))
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Errorf("dial %s from client namespace: %v", host, err)
		}
	}
}
