// Command gorender is the Go reference for the sidecar's /metrics writer: client_golang
// (Debian's golang-github-prometheus-client-golang-dev) rendering the same family set.
//
//	gorender -methods 800 -rounds 20   time Gather + the text and OpenMetrics encoders (JSON out)
//	gorender -floats < values          each value as client_golang spells it (text, OpenMetrics)
//	gorender -serve 127.0.0.1:0 -methods 8
//	                                   serve the family set over HTTP as a Go server does:
//	                                   /metrics (promhttp.HandlerFor, OpenMetrics negotiated),
//	                                   /push (every series changes, as after a reporter's push),
//	                                   /livez (a fixed small answer); prints the address, then
//	                                   serves until killed
//
// Build in GOPATH mode: GO111MODULE=off GOPATH=/usr/share/gocode go build -o gorender .
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

var codes = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
	"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated"}

var buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}

// series is one method's children of every family, for push to change.
type series struct {
	started, received, sent, ok, notFound, internal prometheus.Counter
	seconds                                         prometheus.Observer
}

// add counts k RPCs started (k-2 OK, one NotFound, one Internal) and their messages.
func (s series) add(k float64) {
	s.started.Add(k)
	s.received.Add(k)
	s.sent.Add(k - 2)
	s.ok.Add(k - 2)
	s.notFound.Add(1)
	s.internal.Add(1)
}

// registry registers the family set for methods and returns it with push: every series
// changes (started, OK, NotFound and Internal, one observation, messages), as every method
// does in the sidecar benchmark's pushes.
func registry(methods int) (*prometheus.Registry, func()) {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	started := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "grpc_server_started_total", Help: "RPCs started on the server."}, labels)
	handled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "grpc_server_handled_total", Help: "RPCs completed on the server, by status code."},
		append(labels, "grpc_code"))
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "grpc_server_handling_seconds", Help: "Time the server took to handle RPCs.",
		Buckets: buckets}, labels)
	received := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "grpc_server_msg_received_total", Help: "RPC stream messages received on the server."}, labels)
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "grpc_server_msg_sent_total", Help: "RPC stream messages sent by the server."}, labels)
	reg := prometheus.NewRegistry()
	reg.MustRegister(started, handled, seconds, received, sent)
	all := make([]series, 0, methods)
	for j := 0; j < methods; j++ {
		method := fmt.Sprintf("Method%04d", j)
		values := []string{"unary", "oracle.v1.Oracle", method}
		s := series{started: started.WithLabelValues(values...),
			received: received.WithLabelValues(values...),
			sent:     sent.WithLabelValues(values...),
			seconds:  seconds.WithLabelValues(values...)}
		for i, code := range codes {
			c := handled.WithLabelValues(append(values, code)...)
			switch i {
			case 0:
				s.ok = c
			case 5:
				s.notFound = c
			case 13:
				s.internal = c
			}
		}
		k := float64(50 + j%100)
		s.add(k)
		for n := 0; n < int(k); n++ {
			s.seconds.Observe(0.004 * float64(1+n%7))
		}
		all = append(all, s)
	}
	pushes := 0
	push := func() {
		pushes++
		for j, s := range all {
			s.add(float64(50 + (j+pushes)%100))
			s.seconds.Observe(0.004 * float64(1+(j+pushes)%7))
		}
	}
	return reg, push
}

// serve answers /metrics, /push and /livez on addr until the process is killed.
func serve(addr string, methods int) error {
	reg, push := registry(methods)
	var mu sync.Mutex // pushes one at a time (scrapes read the counters as they are)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/push", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		push()
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"alive":true}`))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	return http.Serve(ln, mux)
}

func render(reg *prometheus.Registry, format expfmt.Format) ([]byte, error) {
	families, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
	}
	if closer, ok := enc.(expfmt.Closer); ok {
		if err := closer.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

func timing(methods, rounds int) error {
	reg, _ := registry(methods)
	out := map[string]interface{}{"methods": methods}
	for name, format := range map[string]expfmt.Format{"text": expfmt.FmtText,
		"openmetrics": expfmt.FmtOpenMetrics} {
		var times []float64
		size := 0
		for r := 0; r < rounds; r++ {
			t0 := time.Now()
			body, err := render(reg, format)
			if err != nil {
				return err
			}
			times = append(times, time.Since(t0).Seconds())
			size = len(body)
		}
		sort.Float64s(times)
		out[name] = times
		out[name+"_bytes"] = size
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// floats prints, for each value read, "text-spelling om-spelling text-le om-le".
func floats() error {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		v, err := strconv.ParseFloat(line, 64)
		if err != nil {
			return err
		}
		name := "v"
		gauge := &dto.MetricFamily{Name: &name, Type: dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: &v}}}}
		var text, om bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&text, gauge); err != nil {
			return err
		}
		if _, err := expfmt.MetricFamilyToOpenMetrics(&om, gauge); err != nil {
			return err
		}
		count := uint64(1)
		hname := "h"
		hist := &dto.MetricFamily{Name: &hname, Type: dto.MetricType_HISTOGRAM.Enum(),
			Metric: []*dto.Metric{{Histogram: &dto.Histogram{SampleCount: &count, SampleSum: &v,
				Bucket: []*dto.Bucket{{UpperBound: &v, CumulativeCount: &count}}}}}}
		var htext, hom bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&htext, hist); err != nil {
			return err
		}
		if _, err := expfmt.MetricFamilyToOpenMetrics(&hom, hist); err != nil {
			return err
		}
		fmt.Println(last(text.String()), last(om.String()), le(htext.String()), le(hom.String()))
	}
	return in.Err()
}

func last(exposition string) string {
	for _, line := range strings.Split(exposition, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			return line[strings.LastIndex(line, " ")+1:]
		}
	}
	return ""
}

func le(exposition string) string {
	i := strings.Index(exposition, `le="`)
	rest := exposition[i+4:]
	return rest[:strings.Index(rest, `"`)]
}

func main() {
	methods := flag.Int("methods", 800, "RPC methods")
	rounds := flag.Int("rounds", 20, "renders per format")
	spell := flag.Bool("floats", false, "spell the values read from stdin")
	addr := flag.String("serve", "", "serve over HTTP on this address (host:port)")
	flag.Parse()
	var err error
	if *spell {
		err = floats()
	} else if *addr != "" {
		err = serve(*addr, *methods)
	} else {
		err = timing(*methods, *rounds)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
