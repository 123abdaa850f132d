package main

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/anyns/anyns/health"
	"github.com/anyns/anyns/server"
	"github.com/anyns/anyns/zone"
)

// MetricsConfig is the `metrics` section.
type MetricsConfig struct {
	// Listen is the host:port of the HTTP endpoint serving /metrics,
	// /healthz and /readyz. Empty (the default) turns it off; a bare port
	// (":9153" or "9153") binds localhost only.
	Listen string `yaml:"listen"`
}

// metricsAddr resolves Listen: a bare port binds 127.0.0.1.
func metricsAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return net.JoinHostPort("127.0.0.1", listen)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// collector reads the process's state at scrape time: nothing on the query
// path is touched by Prometheus but the server's own atomic counters.
type collector struct {
	srv    *server.Server
	loader *zone.Loader
	ctl    func() *controller

	queries, dropped, formerr, notimp, refused, servfail     *prometheus.Desc
	panics, truncated, tcpRefused, tcpOpen                   *prometheus.Desc
	rrl, tcpTimeouts                                         *prometheus.Desc
	zoneQueries, respSize, duration, messages, dnstapDropped *prometheus.Desc
	zoneSerial, zoneRecords, zoneLoaded, zoneError           *prometheus.Desc
	prefixState, prefixAnnounced, prefixTransitions          *prometheus.Desc
	drained, peerState, peerUp                               *prometheus.Desc
}

func newCollector(srv *server.Server, loader *zone.Loader, ctl func() *controller) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("anyns_"+name, help, labels, nil)
	}
	return &collector{
		srv: srv, loader: loader, ctl: ctl,
		queries:           d("queries_total", "DNS queries answered (or withheld by RRL: rcode \"none\"), by transport, query type and response code.", "transport", "qtype", "rcode"),
		zoneQueries:       d("zone_queries_total", "Responses by the zone that answered (\"other\" beyond 10,000 zones).", "zone"),
		respSize:          d("response_size_bytes", "Size of the responses sent."),
		duration:          d("request_duration_seconds", "Handling latency: UDP from the receiving batch's read to its send, counted per response; TCP from the message read to its response buffered."),
		messages:          d("messages_received_total", "DNS messages received, by transport, answered or not.", "transport"),
		dnstapDropped:     d("dnstap_dropped_total", "dnstap messages dropped because the output could not keep up."),
		dropped:           d("dropped_packets_total", "Messages dropped without a reply: shorter than a header, QR set, or unanswerable."),
		formerr:           d("formerr_responses_total", "Queries answered FORMERR."),
		notimp:            d("notimp_responses_total", "Queries answered NOTIMP (opcode other than QUERY)."),
		refused:           d("refused_responses_total", "Queries answered REFUSED."),
		servfail:          d("servfail_responses_total", "Queries answered SERVFAIL."),
		panics:            d("panics_total", "Panics recovered while answering a query."),
		truncated:         d("truncated_responses_total", "UDP responses sent with TC=1."),
		tcpRefused:        d("tcp_connections_refused_total", "TCP connections closed at once because of a connection limit.", "limit"),
		tcpOpen:           d("tcp_connections_open", "TCP connections open now."),
		rrl:               d("rrl_actions_total", "Responses withheld by response rate limiting: dropped, or slipped (sent truncated).", "action"),
		tcpTimeouts:       d("tcp_read_timeouts_total", "TCP connections cut off for not finishing a message in time (slowloris)."),
		zoneSerial:        d("zone_serial", "SOA serial of the zone version serving.", "zone"),
		zoneRecords:       d("zone_records", "Records in the zone version serving.", "zone"),
		zoneLoaded:        d("zone_last_load_timestamp_seconds", "When the zone version serving was loaded.", "zone"),
		zoneError:         d("zone_load_error", "1 if the last load of the zone file failed (the previous version keeps serving).", "zone", "file"),
		prefixState:       d("prefix_health", "Health verdict of a service prefix: 1 for the current state.", "prefix", "state"),
		prefixAnnounced:   d("prefix_announced", "1 if the service prefix is announced over BGP.", "prefix"),
		prefixTransitions: d("prefix_transitions_total", "Health state changes of a service prefix, by new state and reason.", "prefix", "state", "reason"),
		drained:           d("drained", "1 if the instance is drained (anyns ctl drain)."),
		peerState:         d("bgp_session_state", "BGP session state: 1 for the current state.", "neighbor", "state"),
		peerUp:            d("bgp_session_up", "1 if the BGP session is established.", "neighbor"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

var (
	healthStates = []health.State{health.Down, health.Up, health.Degraded}
	bgpStates    = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}
)

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	st := c.srv.Stats()
	counter(c.messages, st.QueriesUDP, "udp")
	counter(c.messages, st.QueriesTCP, "tcp")
	counter(c.dnstapDropped, st.DnstapDropped)
	m := c.srv.Metrics()
	for _, q := range m.Queries {
		counter(c.queries, q.Count, q.Transport, q.Qtype, q.Rcode)
	}
	for z, n := range m.Zones {
		counter(c.zoneQueries, n, z)
	}
	histogram := func(d *prometheus.Desc, h server.Histogram) {
		b := make(map[float64]uint64, len(h.Bounds))
		for i, ub := range h.Bounds {
			b[ub] = h.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, b)
	}
	histogram(c.respSize, m.ResponseSize)
	histogram(c.duration, m.Duration)
	counter(c.dropped, st.Dropped)
	counter(c.formerr, st.FormErr)
	counter(c.notimp, st.NotImp)
	counter(c.refused, st.Refused)
	counter(c.servfail, st.ServFail)
	counter(c.panics, st.Panics)
	counter(c.truncated, st.Truncated)
	counter(c.tcpRefused, st.TCPRefused, "global")
	counter(c.tcpRefused, st.TCPPrefixRefused, "prefix")
	counter(c.tcpTimeouts, st.TCPReadTimeouts)
	counter(c.rrl, st.RRLDropped, "drop")
	counter(c.rrl, st.RRLSlipped, "slip")
	gauge(c.tcpOpen, float64(st.TCPConns))

	for _, f := range c.loader.Status() {
		if f.Serving {
			gauge(c.zoneSerial, float64(f.Serial), f.Origin)
			gauge(c.zoneRecords, float64(f.Records), f.Origin)
			gauge(c.zoneLoaded, float64(f.LoadedAt.UnixNano())/1e9, f.Origin)
		}
		gauge(c.zoneError, b2f(f.Err != nil), f.Origin, f.File)
	}

	ctl := c.ctl()
	if ctl == nil {
		return
	}
	ps, drained := ctl.status()
	gauge(c.drained, b2f(drained))
	for _, p := range ps {
		for _, s := range healthStates {
			gauge(c.prefixState, b2f(p.Health == s.String()), p.Prefix, s.String())
		}
		gauge(c.prefixAnnounced, b2f(p.Announced), p.Prefix)
	}
	for k, n := range ctl.transitionCounts() {
		counter(c.prefixTransitions, n, k.prefix, k.state, k.reason)
	}
	for _, p := range ctl.speaker.Peers() {
		addr := p.Address.String()
		for _, s := range bgpStates {
			gauge(c.peerState, b2f(p.State == s), addr, s)
		}
		gauge(c.peerUp, b2f(p.State == "established"), addr)
	}
}

// metricsServer serves /metrics, /healthz and /readyz.
type metricsServer struct {
	http *http.Server
	ln   net.Listener
}

// startMetrics opens the metrics endpoint. Every metric carries the
// instance's identity as a constant label, so dashboards group by instance.
func startMetrics(addr, identity string, col *collector, ready func() (bool, string), log *zap.Logger) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"identity": identity}, reg)
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "anyns_build_info",
		Help:        "Build of this anyns instance; always 1.",
		ConstLabels: prometheus.Labels{"version": versionString(), "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	wrapped.MustRegister(col, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(log)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := ready()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ms := &metricsServer{ln: ln, http: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log)}}
	go func() { _ = ms.http.Serve(ln) }()
	return ms, nil
}

func (ms *metricsServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = ms.http.Shutdown(ctx)
}

// readiness is /readyz: zones loaded, and with BGP configured, not drained
// and at least one prefix announced or healthy enough to be.
func readiness(loader *zone.Loader, ctl *controller) (bool, string) {
	if !zonesReady(loader, false) {
		return false, "no zone loaded"
	}
	if ctl == nil {
		return true, "ready"
	}
	ps, drained := ctl.status()
	if drained {
		return false, "drained"
	}
	for _, p := range ps {
		if p.Announced || p.Health == health.Up.String() || p.Health == health.Degraded.String() {
			return true, "ready"
		}
	}
	return false, "no prefix healthy"
}
