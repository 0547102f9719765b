package testenv

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TemporalProxy stands in front of the shared Temporal dev server (which
// speaks plain gRPC) as a secured frontend would: over TLS with the test
// certificates, admitting a client by its certificate or by its API key.
type TemporalProxy struct {
	// Addr is the host:port clients dial; the server certificate is
	// valid for its host.
	Addr string

	admitted atomic.Int64
	refused  atomic.Int64
}

// Admitted counts the connections (mTLS) or gRPC calls (API key) let
// through to the dev server.
func (p *TemporalProxy) Admitted() int64 { return p.admitted.Load() }

// Refused counts the TLS handshakes (mTLS) or gRPC calls (API key) turned
// away.
func (p *TemporalProxy) Refused() int64 { return p.refused.Load() }

// h2 is the only protocol offered: gRPC clients refuse a TLS connection
// that did not negotiate it.
var h2 = []string{"h2"}

// StartTemporalMTLSProxy terminates TLS on a free 127.0.0.1 port and
// forwards the connection's bytes to backend (host:port of a plain-text
// Temporal frontend). A client must present a certificate the test CA
// signed; the handshake fails otherwise. The proxy stops with the test.
func StartTemporalMTLSProxy(t testing.TB, certs *Certs, backend string) *TemporalProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TemporalProxy{Addr: l.Addr().String()}
	tc := certs.ServerTLS(true)
	tc.NextProtos = h2

	var (
		mu    sync.Mutex
		open  = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
		track = func(c net.Conn, add bool) {
			mu.Lock()
			defer mu.Unlock()
			if add {
				open[c] = struct{}{}
			} else {
				delete(open, c)
			}
		}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				track(raw, true)
				defer track(raw, false)
				defer raw.Close()
				p.forward(tls.Server(raw, tc), backend, func(c net.Conn) { track(c, true) }, func(c net.Conn) { track(c, false) })
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

// forward completes the handshake, then copies both ways until either
// side closes.
func (p *TemporalProxy) forward(conn *tls.Conn, backend string, opened, closed func(net.Conn)) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.refused.Add(1)
		// In TLS 1.3 the client learns that its certificate was refused
		// only from the alert, after it has begun to write. Closing now
		// would reset the connection and the client could see "broken
		// pipe" instead of the alert; reading what it sends until it
		// hangs up lets the alert reach it.
		raw := conn.NetConn()
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, raw)
		return
	}
	up, err := net.DialTimeout("tcp", backend, 10*time.Second)
	if err != nil {
		return
	}
	p.admitted.Add(1)
	opened(up)
	defer closed(up)
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
	<-done
	// One direction ended: end both, so the other copy returns too.
	_ = conn.Close()
	up.Close()
	<-done
}

// gRPC status codes the API-key proxy answers with.
const (
	grpcUnauthenticated = 16
	grpcUnavailable     = 14
)

// StartTemporalAPIKeyProxy serves gRPC over TLS (HTTP/2, server
// certificate only) on a free 127.0.0.1 port and passes every call that
// carries `authorization: Bearer <apiKey>` to backend over unencrypted
// HTTP/2, streaming bodies and trailers both ways. Any other call gets
// gRPC status UNAUTHENTICATED. The key is not forwarded. The proxy stops
// with the test.
func StartTemporalAPIKeyProxy(t testing.TB, certs *Certs, backend, apiKey string) *TemporalProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TemporalProxy{Addr: l.Addr().String()}

	var upstream http.Protocols
	upstream.SetUnencryptedHTTP2(true)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: backend})
			r.Out.Header.Del("Authorization")
		},
		Transport:     &http.Transport{Protocols: &upstream, ForceAttemptHTTP2: true},
		FlushInterval: -1, // streaming calls: every frame as it comes
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeGRPCStatus(w, grpcUnavailable, "proxy: "+err.Error())
		},
	}
	want := []byte("Bearer " + apiKey)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			p.refused.Add(1)
			msg := "invalid API key"
			if len(got) == 0 {
				msg = "missing API key"
			}
			writeGRPCStatus(w, grpcUnauthenticated, msg)
			return
		}
		p.admitted.Add(1)
		rp.ServeHTTP(w, r)
	})

	var protocols http.Protocols
	protocols.SetHTTP2(true)
	tc := certs.ServerTLS(false)
	tc.NextProtos = h2
	srv := &http.Server{Handler: handler, TLSConfig: tc, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second,
		// Handshakes that tests make fail on purpose are not news.
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("API-key proxy shutdown: %v", err)
		}
		srv.Close()
	})
	return p
}

// writeGRPCStatus answers a call with a status and no message: a gRPC
// "trailers-only" response (HTTP 200, the status in the headers).
func writeGRPCStatus(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", url.PathEscape(msg))
	w.WriteHeader(http.StatusOK)
}
