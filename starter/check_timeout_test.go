package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestCheckNeverHangs: every component points at a server that accepts
// connections and never says a word. check gives each probe its timeout,
// reports all five failed, and exits 1 soon after.
func TestCheckNeverHangs(t *testing.T) {
	testenv.Integration(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 64)
	defer func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case accepted <- c: // held open: read nothing, write nothing
			default:
				c.Close()
			}
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	addr := "127.0.0.1:" + port
	env := map[string]string{
		"TEMPORAL_ADDRESS": addr, "KAFKA_BOOTSTRAP_SERVERS": addr,
		"MYSQL_PORT": port, "POSTGRES_PORT": port, "TIMESCALE_PORT": port,
	}
	began := time.Now()
	code, out, _ := starter(t, env, "check", "-timeout", "2s")
	took := time.Since(began)
	if code != 1 || strings.Count(out, " FAILED: ") != 5 {
		t.Errorf("exit %d, want 1 with five failures:\n%s", code, out)
	}
	if took > 8*time.Second {
		t.Errorf("check took %s with a 2s timeout per probe", took)
	}
}
