package xfr

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// NotifierConfig configures a Notifier.
type NotifierConfig struct {
	// Key, when not nil, signs every NOTIFY with TSIG (RFC 8945).
	Key *Key
	// Tries is how many times a NOTIFY is sent to a target without a
	// reply. Defaults to 5.
	Tries int
	// Timeout is the wait for a reply to the first try; it doubles with
	// each try (1s, 2s, 4s, 8s, 16s by default). Defaults to 1s.
	Timeout time.Duration
	// MaxPending bounds the (zone, target) pairs being notified at once;
	// beyond it a new NOTIFY is dropped and logged. Defaults to 256.
	MaxPending int
}

// Notifier sends NOTIFY messages (RFC 1996) over UDP to a zone's
// secondaries. Create it with NewNotifier; Close stops it. Its methods are
// safe from any goroutine.
type Notifier struct {
	cfg NotifierConfig
	key *tsigKey
	log *zap.Logger

	mu      sync.Mutex
	closed  bool
	pending map[notifyKey]context.CancelFunc
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

type notifyKey struct {
	zone   string
	target netip.AddrPort
}

// NewNotifier returns a Notifier. It starts nothing: each Notify starts
// its own bounded goroutines.
func NewNotifier(cfg NotifierConfig, log *zap.Logger) (*Notifier, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Tries <= 0 {
		cfg.Tries = 5
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 256
	}
	n := &Notifier{cfg: cfg, log: log, pending: make(map[notifyKey]context.CancelFunc)}
	if k := cfg.Key; k != nil {
		alg, ok := algorithms[strings.ToLower(strings.TrimSuffix(k.Algorithm, "."))]
		if !ok {
			return nil, fmt.Errorf("notify key %s: unknown algorithm %q", k.Name, k.Algorithm)
		}
		if _, err := base64.StdEncoding.DecodeString(k.Secret); err != nil {
			return nil, fmt.Errorf("notify key %s: secret: %w", k.Name, err)
		}
		n.key = &tsigKey{name: dns.CanonicalName(k.Name), alg: alg, secret: k.Secret}
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Notify tells each target that zone now has serial, without blocking:
// each target gets a NOTIFY for zone's SOA over UDP, retried up to
// Config.Tries times with a doubling timeout, until it replies (a NOERROR
// reply ends it; an error reply is logged and ends it too). A newer Notify
// for the same zone and target replaces one still being retried.
func (n *Notifier) Notify(zoneName string, serial uint32, targets []netip.AddrPort) {
	zoneName = dns.CanonicalName(zoneName)
	for _, t := range targets {
		k := notifyKey{zoneName, t}
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			return
		}
		if cancel := n.pending[k]; cancel != nil {
			cancel()
			delete(n.pending, k)
		}
		if len(n.pending) >= n.cfg.MaxPending {
			n.mu.Unlock()
			n.log.Warn("notify dropped: too many pending", zap.String("zone", zoneName), zap.Stringer("peer", t))
			continue
		}
		ctx, cancel := context.WithCancel(n.ctx)
		n.pending[k] = cancel
		n.wg.Add(1)
		n.mu.Unlock()
		go func() {
			defer n.wg.Done()
			n.send(ctx, zoneName, serial, t)
			n.mu.Lock()
			if ctx.Err() == nil { // still ours: not replaced
				delete(n.pending, k)
			}
			n.mu.Unlock()
			cancel()
		}()
	}
}

// send delivers one NOTIFY with retries.
func (n *Notifier) send(ctx context.Context, zoneName string, serial uint32, target netip.AddrPort) {
	log := n.log.With(zap.String("zone", zoneName), zap.Uint32("serial", serial), zap.Stringer("peer", target))
	timeout := n.cfg.Timeout
	for try := 1; try <= n.cfg.Tries; try++ {
		m := new(dns.Msg)
		m.SetNotify(zoneName)
		m.Authoritative = true
		// No SOA in the answer section (optional, RFC 1996 section 3.7):
		// the serial alone is not a valid SOA, and Knot DNS answers
		// FORMERR to one with empty names.
		c := &dns.Client{Net: "udp", Timeout: timeout}
		if n.key != nil {
			m.SetTsig(n.key.name, n.key.alg, fudge, time.Now().Unix())
			c.TsigSecret = n.key.secrets()
		}
		r, _, err := c.ExchangeContext(ctx, m, target.String())
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if r.Rcode != dns.RcodeSuccess {
				log.Warn("notify refused", zap.String("rcode", dns.RcodeToString[r.Rcode]))
			} else if ce := log.Check(zap.DebugLevel, "notify acknowledged"); ce != nil {
				ce.Write(zap.Int("try", try))
			}
			return
		}
		if try == n.cfg.Tries {
			log.Warn("notify unanswered", zap.Int("tries", try), zap.Error(err))
			return
		}
		timeout *= 2
	}
}

// Close stops every pending NOTIFY and waits for their goroutines. Notify
// after Close does nothing. Close is safe to call more than once.
func (n *Notifier) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
}
