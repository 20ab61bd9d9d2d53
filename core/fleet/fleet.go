package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Defaults of Options.
const (
	DefaultLeaseSlack    = 30 * time.Second
	DefaultDialTimeout   = 5 * time.Second
	DefaultProbeInterval = 5 * time.Second
	DefaultProbeTimeout  = 5 * time.Second
	DefaultBackoffMin    = 250 * time.Millisecond
	DefaultBackoffMax    = 15 * time.Second
	// keepalive pings find a dead connection (a partition drops no RST)
	// within keepaliveTime+keepaliveTimeout.
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
	// reconnectMax caps gRPC's redial backoff (its default is 120 s),
	// so a node that was cut off is back within seconds of the network.
	reconnectMax = 5 * time.Second
)

// Options configure a Fleet. All are optional for a Fleet that only
// publishes and lists (`sesame grants --fleet`); Run needs Consumer and
// Store.
type Options struct {
	Logger   hclog.Logger
	Consumer Consumer
	Store    Store
	// LeaseSlack is how much longer than its deadline a grant's etcd
	// lease lives, so lease timing never ends a grant early: the
	// deadline does, on every node, through the kernel's timeout.
	LeaseSlack time.Duration
	// DialTimeout bounds connecting (and Check's probe).
	DialTimeout time.Duration
	// ProbeInterval is how often Run checks it can reach a quorum and
	// asks the watch for its progress (Status's Connected and Lag).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// BackoffMin and BackoffMax bound Run's wait between attempts after
	// a failed watch (exponential, jittered).
	BackoffMin, BackoffMax time.Duration
	// Now is the wall clock; tests replace it.
	Now func() time.Time
}

// Fleet is one node's membership of a group: it publishes this node's
// grants, revokes and lists the group's, and (Run) watches the group and
// hands changes to the Consumer. Its methods are safe for concurrent use.
type Fleet struct {
	cfg  Config
	opts Options
	log  hclog.Logger
	tls  *tls.Config
	cli  *clientv3.Client

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex // guards status and running
	status Status
	// running is set while Run runs; a second concurrent Run is refused.
	running bool
}

// New validates cfg (after WithDefaults: Node must be set), reads the
// TLS files and makes an etcd client. It does not wait for etcd: a node
// whose etcd is down still starts, and Check tells whether it is up.
func New(cfg Config, opts Options) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, keyErr(KeyEndpoints, "not set: no fleet")
	}
	if cfg.Node == "" {
		return nil, keyErr(KeyNode, "not set (call Config.WithDefaults)")
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	setDefaults(&opts)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  tc,
		DialKeepAliveTime:    keepaliveTime,
		DialKeepAliveTimeout: keepaliveTimeout,
		// No pings on a connection without streams: etcd's server
		// policy refuses them and answers with GOAWAY too_many_pings.
		PermitWithoutStream: false,
		// The client is quiet: Fleet logs what matters, through hclog.
		Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMax},
			MinConnectTimeout: opts.DialTimeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("fleet.New %s: %w", cfg.Endpoints, err)
	}
	return &Fleet{cfg: cfg, opts: opts, log: opts.Logger.Named("fleet"), tls: tc, cli: cli}, nil
}

func setDefaults(o *Options) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.LeaseSlack, DefaultLeaseSlack)
	def(&o.DialTimeout, DefaultDialTimeout)
	def(&o.ProbeInterval, DefaultProbeInterval)
	def(&o.ProbeTimeout, DefaultProbeTimeout)
	def(&o.BackoffMin, DefaultBackoffMin)
	def(&o.BackoffMax, DefaultBackoffMax)
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Node is this node's name in the group.
func (f *Fleet) Node() string { return f.cfg.Node }

// Group is the group's name.
func (f *Fleet) Group() string { return f.cfg.Group }

// Close closes the etcd client. Call it after Run has returned; it is
// safe to call twice.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		f.closeErr = f.cli.Close()
		if errors.Is(f.closeErr, context.Canceled) {
			f.closeErr = nil
		}
	})
	return f.closeErr
}

// Check makes one linearizable read of the group's prefix, which needs a
// quorum. Outcomes: nil (etcd answers); an error matching ErrTLS naming
// the endpoint and the key to fix when the TLS credentials are refused;
// an error matching ErrUnreachable otherwise. The daemon calls it at
// start to log a clear error; local doors work whatever it returns.
func (f *Fleet) Check(ctx context.Context) error {
	_, err := f.probe(ctx)
	return err
}

// probe returns the cluster's current revision.
func (f *Fleet) probe(ctx context.Context) (int64, error) {
	pctx, cancel := context.WithTimeout(ctx, f.opts.ProbeTimeout)
	defer cancel()
	resp, err := f.cli.Get(pctx, grantsPrefix(f.cfg.Group), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil {
		return resp.Header.Revision, nil
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	for _, ep := range f.cfg.Endpoints {
		if terr := diagnoseTLS(ctx, ep, f.tls, f.opts.ProbeTimeout); terr != nil {
			return 0, terr
		}
	}
	return 0, fmt.Errorf("%w: %s: %v", ErrUnreachable, f.cfg.Endpoints, err)
}
