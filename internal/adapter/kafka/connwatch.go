package kafka

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// ErrSASLRejected is how ConnWatch names a connection the broker closed
// while the client was authenticating: some brokers answer wrong
// credentials that way instead of with SASL_AUTHENTICATION_FAILED.
var ErrSASLRejected = errors.New("the broker closed the connection during SASL authentication, as it does when it rejects the credentials")

// ConnWatch records the outcome of a client's connection attempts
// (dial, TLS handshake, SASL). franz-go retries a refused connection
// silently inside its fetch loop, so a consumer whose credentials were
// revoked would otherwise just stop making progress; with a ConnWatch it
// can see why, and say so. Install it with Opt.
type ConnWatch struct {
	sasl bool

	mu       sync.Mutex
	lastErr  error
	failures int // consecutive failed attempts
}

// NewConnWatch watches the connections of a client configured with cfg.
func NewConnWatch(cfg config.Kafka) *ConnWatch { return &ConnWatch{sasl: cfg.SASLMechanism != ""} }

// Opt installs the watch as a client hook.
func (w *ConnWatch) Opt() kgo.Opt { return kgo.WithHooks(w) }

// OnBrokerConnect implements kgo.HookBrokerConnect; err covers the dial,
// the TLS handshake and the SASL exchange.
func (w *ConnWatch) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.lastErr, w.failures = nil, 0
		return
	}
	var firstRead *kgo.ErrFirstReadEOF
	if w.sasl && errors.Is(err, io.EOF) && !errors.As(err, &firstRead) {
		// The dial, TLS and the API versions exchange succeeded (an EOF
		// there is ErrFirstReadEOF): the broker hung up on SASL.
		err = errors.Join(ErrSASLRejected, err)
	}
	w.lastErr = err
	w.failures++
}

// Last returns how many connection attempts in a row have failed, and the
// error of the last one (nil when it succeeded).
func (w *ConnWatch) Last() (failures int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failures, w.lastErr
}
