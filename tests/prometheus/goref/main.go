// The reference for tests/prometheus/test_goref.py: a gRPC server instrumented with
// go-grpc-prometheus exactly as its README shows (default metrics, EnableHandlingTimeHistogram
// with the default buckets, Register for zero series of every method, promhttp.Handler).
//
// It serves compat.v1.Echo with one method of each kind, over a raw-bytes codec so that no
// generated code is needed: the handlers below are what protoc-gen-go-grpc writes, by hand.
// Each request is JSON {"sleep": seconds, "code": number, "fail": bool, "n": responses}; the
// last request of a call decides its end: sleep, then the status code (or, with "fail", a
// plain error, which gRPC reports as Unknown as for an uncaught exception in Python).
//
// Built in GOPATH mode from Debian's packages (golang-go, golang-google-grpc-dev,
// golang-github-grpc-ecosystem-go-grpc-prometheus-dev,
// golang-github-prometheus-client-golang-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o goref main.go
//
// It prints {"grpc": PORT, "metrics": PORT} on stdout once both listen on 127.0.0.1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	grpc_prometheus "github.com/grpc-ecosystem/go-grpc-prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

const service = "compat.v1.Echo"

// rawCodec replaces the proto codec: messages are the bytes on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case *[]byte:
		return *m, nil
	case []byte:
		return m, nil
	}
	return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	m, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*m = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

type plan struct {
	Sleep float64 `json:"sleep"`
	Code  uint32  `json:"code"`
	Fail  bool    `json:"fail"`
	N     int     `json:"n"`
}

func parse(raw []byte) plan {
	var p plan
	_ = json.Unmarshal(raw, &p)
	return p
}

// finish sleeps, then ends the call as the plan says.
func finish(p plan) error {
	time.Sleep(time.Duration(p.Sleep * float64(time.Second)))
	if p.Fail {
		return errors.New("boom")
	}
	if p.Code != 0 {
		return status.Error(codes.Code(p.Code), "asked for it")
	}
	return nil
}

var answer = []byte("ok")

func doUnary(_ context.Context, req interface{}) (interface{}, error) {
	if err := finish(parse(*req.(*[]byte))); err != nil {
		return nil, err
	}
	return &answer, nil
}

func unaryHandler(srv interface{}, ctx context.Context, dec func(interface{}) error, interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new([]byte)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return doUnary(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + service + "/Unary"}
	return interceptor(ctx, in, info, doUnary)
}

func serverStreamHandler(_ interface{}, stream grpc.ServerStream) error {
	in := new([]byte)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	p := parse(*in)
	for i := 0; i < p.N; i++ {
		if err := stream.SendMsg(&answer); err != nil {
			return err
		}
	}
	return finish(p)
}

func clientStreamHandler(_ interface{}, stream grpc.ServerStream) error {
	var last []byte
	for {
		in := new([]byte)
		err := stream.RecvMsg(in)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		last = *in
	}
	if err := finish(parse(last)); err != nil {
		return err
	}
	return stream.SendMsg(&answer) // SendAndClose
}

func bidiHandler(_ interface{}, stream grpc.ServerStream) error {
	var last []byte
	for {
		in := new([]byte)
		err := stream.RecvMsg(in)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		last = *in
		for i := 0; i < parse(last).N; i++ {
			if err := stream.SendMsg(&answer); err != nil {
				return err
			}
		}
	}
	return finish(parse(last))
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: service,
	HandlerType: (*interface{})(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: unaryHandler}},
	Streams: []grpc.StreamDesc{
		{StreamName: "ServerStream", Handler: serverStreamHandler, ServerStreams: true},
		{StreamName: "ClientStream", Handler: clientStreamHandler, ClientStreams: true},
		{StreamName: "Bidi", Handler: bidiHandler, ServerStreams: true, ClientStreams: true},
	},
	Metadata: "compat.proto",
}

func main() {
	encoding.RegisterCodec(rawCodec{})
	server := grpc.NewServer(
		grpc.UnaryInterceptor(grpc_prometheus.UnaryServerInterceptor),
		grpc.StreamInterceptor(grpc_prometheus.StreamServerInterceptor),
	)
	server.RegisterService(&serviceDesc, struct{}{})
	grpc_prometheus.EnableHandlingTimeHistogram()
	grpc_prometheus.Register(server)

	grpcListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	metricsListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.Handle("/metrics", promhttp.Handler())
	go func() { _ = http.Serve(metricsListener, nil) }()
	fmt.Printf("{\"grpc\": %d, \"metrics\": %d}\n", grpcListener.Addr().(*net.TCPAddr).Port,
		metricsListener.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	if err := server.Serve(grpcListener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
