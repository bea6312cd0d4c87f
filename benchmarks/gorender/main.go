// Command gorender is the Go reference for the sidecar's /metrics writer: client_golang
// (Debian's golang-github-prometheus-client-golang-dev) rendering the same family set.
//
//	gorender -methods 800 -rounds 20   time Gather + the text and OpenMetrics encoders (JSON out)
//	gorender -floats < values          each value as client_golang spells it (text, OpenMetrics)
//
// Build in GOPATH mode: GO111MODULE=off GOPATH=/usr/share/gocode go build -o gorender .
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

var codes = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
	"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated"}

var buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}

func registry(methods int) *prometheus.Registry {
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
	for j := 0; j < methods; j++ {
		method := fmt.Sprintf("Method%04d", j)
		values := []string{"unary", "oracle.v1.Oracle", method}
		k := float64(50 + j%100)
		started.WithLabelValues(values...).Add(k)
		received.WithLabelValues(values...).Add(k)
		sent.WithLabelValues(values...).Add(k - 2)
		for i, code := range codes {
			c := handled.WithLabelValues(append(values, code)...)
			switch i {
			case 0:
				c.Add(k - 2)
			case 5, 13:
				c.Add(1)
			}
		}
		h := seconds.WithLabelValues(values...)
		for n := 0; n < int(k); n++ {
			h.Observe(0.004 * float64(1+n%7))
		}
	}
	return reg
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
	reg := registry(methods)
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
	flag.Parse()
	var err error
	if *spell {
		err = floats()
	} else {
		err = timing(*methods, *rounds)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
