package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/heraldbus/herald/internal/redistest"
	"github.com/heraldbus/herald/internal/server"
)

// The OTEL_* variables decide: nothing by default, otlp with an endpoint,
// clear errors for what herald does not support.
func TestSetupTracingFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		on      bool
		wantErr string
	}{
		{env: nil},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "otlp only"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantErr: "http/protobuf"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_PROPAGATORS": "b3"}, wantErr: "tracecontext"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: true},
	} {
		for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_PROPAGATORS", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
			t.Setenv(k, tc.env[k])
		}
		before := otel.GetTracerProvider()
		stop, err := server.SetupTracing(context.Background())
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err %v, want one naming %q", tc.env, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.on != (otel.GetTracerProvider() != before):
			t.Errorf("%v: tracer provider set = %v, want %v", tc.env, otel.GetTracerProvider() != before, tc.on)
		}
		stop()
	}
}

// herald serve with OTEL_EXPORTER_OTLP_ENDPOINT: an HTTP publish reaches the
// collector as spans (server and producer) of the caller's trace, and the
// access log line names the trace.
func TestServeExportsOTLP(t *testing.T) {
	spans := make(chan *coltrace.ExportTraceServiceRequest, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := &coltrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, req) != nil {
			http.Error(w, "bad", 400)
			return
		}
		spans <- req
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_SERVICE_NAME", "herald-test")
	stop, err := server.SetupTracing(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	logs := &syncBuffer{}
	log := server.WithTraceIDs(slog.New(slog.NewJSONHandler(logs, nil)))
	redis := redistest.URL(t)
	ns := redistest.Namespace(t)
	cfg := load(t, server.Overrides{Redis: &redis, Namespace: &ns})
	s := server.New(cfg, log)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(context.Background()) }()
	defer func() { _ = s.Shutdown(context.Background()) }()

	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", s.URL()+"/v1/topics/otlp/events", strings.NewReader("hi"))
	req.Header.Set("traceparent", "00-"+trace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	kinds := map[string]bool{}
	service := ""
	for !kinds["SPAN_KIND_SERVER"] || !kinds["SPAN_KIND_PRODUCER"] {
		select {
		case r := <-spans:
			for _, rs := range r.ResourceSpans {
				for _, a := range rs.GetResource().GetAttributes() {
					if a.Key == "service.name" {
						service = a.GetValue().GetStringValue()
					}
				}
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						if strings.EqualFold(hexs(sp.TraceId), trace) {
							kinds[sp.Kind.String()] = true
						}
					}
				}
			}
		case <-ctx.Done():
			t.Fatalf("the collector got spans of kinds %v in the caller's trace; want a server and a producer span", kinds)
		}
	}
	if service != "herald-test" {
		t.Errorf("service.name %q, want OTEL_SERVICE_NAME's herald-test", service)
	}
	if !strings.Contains(logs.String(), `"trace_id":"`+trace+`"`) {
		t.Errorf("no log line names trace %s:\n%s", trace, logs.String())
	}
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// syncBuffer is a bytes.Buffer for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
