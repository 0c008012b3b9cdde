package cli_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/heraldbus/herald/internal/redistest"
)

// With OTEL_EXPORTER_OTLP_ENDPOINT, `herald publish` exports its producer
// span and `herald subscribe` its consumer span, in one trace, before they
// exit; an exporter herald does not have is a usage error (exit 2).
func TestCLITracesPublishAndSubscribe(t *testing.T) {
	var mu sync.Mutex
	var spans []*tracepb.Span
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := &coltrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(b, req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer collector.Close()
	ns := redistest.Namespace(t)

	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	if r := runBin(t, ns, "", "topic", "list"); r.code != 2 || !strings.Contains(r.err, "otlp") {
		t.Fatalf("OTEL_TRACES_EXPORTER=zipkin: exit %d, stderr %q; want 2 naming otlp", r.code, r.err)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	if r := runBin(t, ns, "", "publish", "traced", `{"n":1}`); r.code != 0 {
		t.Fatalf("publish: exit %d: %s", r.code, r.err)
	}
	if r := runBin(t, ns, "", "subscribe", "traced", "--group", "g", "--from", "beginning", "--count", "1"); r.code != 0 {
		t.Fatalf("subscribe: exit %d: %s", r.code, r.err)
	}
	mu.Lock()
	defer mu.Unlock()
	var producer, consumer *tracepb.Span
	for _, s := range spans {
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_PRODUCER:
			producer = s
		case tracepb.Span_SPAN_KIND_CONSUMER:
			consumer = s
		}
	}
	if producer == nil || consumer == nil {
		t.Fatalf("collector got %d spans, want a producer and a consumer span", len(spans))
	}
	if string(consumer.TraceId) != string(producer.TraceId) || string(consumer.ParentSpanId) != string(producer.SpanId) {
		t.Fatalf("the consumer span is not the child of the producer span (trace %x/%x, parent %x, producer %x)",
			consumer.TraceId, producer.TraceId, consumer.ParentSpanId, producer.SpanId)
	}
}
