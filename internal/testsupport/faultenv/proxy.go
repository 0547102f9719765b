package faultenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxies is an in-process Toxiproxy server: the links of one test.
type Proxies struct {
	t      testing.TB
	server *toxiproxy.ApiServer
}

// NewProxies starts no listener of its own: links are created with Link
// and stopped with the test.
func NewProxies(t testing.TB) *Proxies {
	// Some toxics (bandwidth) log through zerolog's global logger, to
	// stdout; the links' faults are the test's own log lines.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	return &Proxies{t: t, server: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())}
}

// Link is one TCP proxy from a local port to a service: what a worker
// dials instead of the service, so the test can break the network between
// them.
type Link struct {
	t     testing.TB
	Name  string
	proxy *toxiproxy.Proxy

	mu  sync.Mutex
	cut bool
}

// Link proxies a free 127.0.0.1 port to upstream (host:port).
func (p *Proxies) Link(name, upstream string) *Link {
	return p.LinkAt(name, "127.0.0.1:0", upstream)
}

// LinkAt proxies listen to upstream.
func (p *Proxies) LinkAt(name, listen, upstream string) *Link {
	p.t.Helper()
	px := toxiproxy.NewProxy(p.server, name, listen, upstream)
	if err := px.Start(); err != nil {
		p.t.Fatalf("toxiproxy %s -> %s: %v", listen, upstream, err)
	}
	p.t.Cleanup(px.Stop)
	return &Link{t: p.t, Name: name, proxy: px}
}

// Addr is the link's host:port.
func (l *Link) Addr() string { return l.proxy.Listen }

// Port is the link's port.
func (l *Link) Port() int {
	_, p, _ := net.SplitHostPort(l.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Cut partitions the network: from now on no byte passes in either
// direction, on open connections and new ones alike (new connections are
// accepted, as a SYN is by a host behind a dead route, and then hang). It
// is a blackhole, not a reset: clients notice by their own timeouts.
func (l *Link) Cut() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, dir := range []string{"upstream", "downstream"} {
		l.add(fmt.Sprintf(`{"name":"cut_%s","type":"timeout","stream":%q,"attributes":{"timeout":0}}`, dir, dir))
	}
	l.cut = true
}

// Restore heals the link: every connection that lived through the cut is
// closed (bytes were lost on them, as on a real partition that outlasted
// the peers' timeouts), every toxic is removed, and new connections pass.
func (l *Link) Restore() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.proxy.Stop()
	l.clear()
	if err := l.proxy.Start(); err != nil {
		l.t.Fatalf("toxiproxy %s: restart: %v", l.Name, err)
	}
	l.cut = false
}

// Latency delays every chunk of data by d in each direction (2d per
// round trip).
func (l *Link) Latency(d time.Duration) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, dir := range []string{"upstream", "downstream"} {
		l.add(fmt.Sprintf(`{"name":"latency_%s","type":"latency","stream":%q,"attributes":{"latency":%d}}`, dir, dir, d.Milliseconds()))
	}
}

// Bandwidth limits each direction to kbps kilobytes per second.
func (l *Link) Bandwidth(kbps int64) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, dir := range []string{"upstream", "downstream"} {
		l.add(fmt.Sprintf(`{"name":"bandwidth_%s","type":"bandwidth","stream":%q,"attributes":{"rate":%d}}`, dir, dir, kbps))
	}
}

// Clear removes latency and bandwidth toxics; open connections stay.
func (l *Link) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
}

func (l *Link) add(spec string) {
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		l.t.Fatalf("toxiproxy %s: %s: %v", l.Name, spec, err)
	}
}

func (l *Link) clear() {
	for _, name := range []string{"cut", "latency", "bandwidth"} {
		for _, dir := range []string{"upstream", "downstream"} {
			_ = l.proxy.Toxics.RemoveToxic(context.Background(), name+"_"+dir)
		}
	}
}
