package herald

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing (docs/operations.md, "Tracing and metrics"): a producer span per
// Publish, PublishAsync and PublishBatch call, whose context is written into
// each event's headers (W3C traceparent and tracestate through the
// propagator), and a consumer span per handler call, the child of the
// producer's context read back from the event's headers and linked to it.
// Attributes follow the OpenTelemetry messaging semantic conventions.
//
// When no tracer provider is in use (Config.TracerProvider is a no-op one,
// or it is nil and the global provider was never set), the hot paths only
// test a flag: nothing is allocated.

// TracerName is the instrumentation scope of Herald's spans.
const TracerName = "github.com/heraldbus/herald"

// Messaging semantic-convention attribute keys.
const (
	attrSystem        = attribute.Key("messaging.system")
	attrDestination   = attribute.Key("messaging.destination.name")
	attrOpType        = attribute.Key("messaging.operation.type")
	attrOpName        = attribute.Key("messaging.operation.name")
	attrMessageID     = attribute.Key("messaging.message.id")
	attrGroup         = attribute.Key("messaging.consumer.group.name")
	attrPartition     = attribute.Key("messaging.destination.partition.id")
	attrBatchCount    = attribute.Key("messaging.batch.message_count")
	attrBodySize      = attribute.Key("messaging.message.body.size")
	attrDeliveryCount = attribute.Key("messaging.herald.attempt")
	attrPosition      = attribute.Key("messaging.herald.position")
	attrKey           = attribute.Key("messaging.herald.key")
)

var (
	kvSystem    = attrSystem.String("herald")
	kvSend      = attrOpType.String("send")
	kvPublish   = attrOpName.String("publish")
	kvProcess   = attrOpType.String("process")
	kvProcessOp = attrOpName.String("process")

	producerStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}

	noopSpan = trace.SpanFromContext(context.Background()) // records nothing
)

// batchTraced marks the context of a PublishBatch call that has its span.
type batchTraced struct{}

// initialGlobalTP is the global tracer provider as it was before anyone set
// one: while otel.GetTracerProvider still returns it, nothing records. When
// something set the global provider before this package's initialisation,
// it is nil (and the global provider is always used).
var initialGlobalTP = func() trace.TracerProvider {
	tp := otel.GetTracerProvider()
	if fmt.Sprintf("%T", tp) != "*global.tracerProvider" {
		return nil
	}
	return tp
}()

// tracing holds a Client's tracer and propagator.
type tracing struct {
	tp     trace.TracerProvider
	tracer trace.Tracer // nil: tracing is off for good
	global bool         // the tracer is the global provider's: on once the global is set
	prop   propagation.TextMapPropagator
}

func newTracing(cfg *Config) tracing {
	tr := tracing{prop: cfg.Propagator}
	if tr.prop == nil {
		tr.prop = otel.GetTextMapPropagator()
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp, tr.global = otel.GetTracerProvider(), true
	}
	tr.tp = tp
	if _, ok := tp.(noop.TracerProvider); ok {
		return tr
	}
	tr.tracer = tp.Tracer(TracerName, trace.WithInstrumentationVersion(version()))
	return tr
}

// on says whether spans are to be made.
func (tr *tracing) on() bool {
	if tr.tracer == nil {
		return false
	}
	return !tr.global || otel.GetTracerProvider() != initialGlobalTP
}

// startPublish starts the producer span of a publish call of n events to
// topic. ev, when given, is the one event: a trace context in its headers
// becomes the span's parent when ctx has none.
func (tr *tracing) startPublish(ctx context.Context, topic string, ev *Event, n int) (context.Context, trace.Span) {
	if ev != nil && ev.Headers["traceparent"] != "" && !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = tr.prop.Extract(ctx, propagation.MapCarrier(ev.Headers))
	}
	ctx, span := tr.tracer.Start(ctx, "publish "+topic, producerStart...)
	if span.IsRecording() {
		span.SetAttributes(kvSystem, kvSend, kvPublish, attrDestination.String(topic))
		if n != 1 {
			span.SetAttributes(attrBatchCount.Int(n))
		}
		if ev != nil {
			span.SetAttributes(attrBodySize.Int(len(ev.Data)))
			if ev.Key != "" {
				span.SetAttributes(attrKey.String(ev.Key))
			}
		}
	}
	return ctx, span
}

// inject writes the span context of ctx into a copy of ev's headers (the
// caller's map is never written).
func (tr *tracing) inject(ctx context.Context, ev *Event) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	h := make(map[string]string, len(ev.Headers)+2)
	maps.Copy(h, ev.Headers)
	tr.prop.Inject(ctx, propagation.MapCarrier(h))
	ev.Headers = h
}

// endPublish ends a producer span with the outcome of the publish.
func endPublish(span trace.Span, ev *Event, pos Position, err error) {
	if span.IsRecording() {
		if ev != nil && ev.ID != "" {
			span.SetAttributes(attrMessageID.String(ev.ID))
		}
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else if pos.ID != "" {
			span.SetAttributes(attrPartition.String(strconv.Itoa(pos.Partition)), attrPosition.String(pos.ID))
		}
	}
	span.End()
}

// publishTraced is Publish with a producer span.
func (c *Client) publishTraced(ctx context.Context, topicName string, ev Event, opts []PublishOption) (Position, error) {
	ctx, span := c.tracing.startPublish(ctx, topicName, &ev, 1)
	c.tracing.inject(ctx, &ev)
	f := &PublishFuture{c: c, topic: topicName}
	var pos Position
	err := c.publishOne(ctx, f, &ev, opts, false)
	if err == nil {
		pos, err = f.Wait(ctx)
	}
	endPublish(span, &ev, pos, err)
	return pos, err
}

// publishAsyncTraced is PublishAsync with a producer span, which covers the
// queueing: the future's outcome comes later (Wait).
func (c *Client) publishAsyncTraced(ctx context.Context, topicName string, ev Event, opts []PublishOption) *PublishFuture {
	ctx, span := c.tracing.startPublish(ctx, topicName, &ev, 1)
	c.tracing.inject(ctx, &ev)
	f := &PublishFuture{c: c, topic: topicName}
	f.err = c.publishOne(ctx, f, &ev, opts, true)
	if f.err != nil {
		f.req.settle()
	}
	endPublish(span, &ev, Position{}, f.err)
	return f
}

// publishBatchTraced is PublishBatch with one producer span for the batch,
// whose context every event carries.
func (c *Client) publishBatchTraced(ctx context.Context, topicName string, evs []Event, opts []PublishOption) ([]Position, error) {
	ctx, span := c.tracing.startPublish(ctx, topicName, nil, len(evs))
	if trace.SpanContextFromContext(ctx).IsValid() {
		cp := make([]Event, len(evs))
		copy(cp, evs)
		for i := range cp {
			c.tracing.inject(ctx, &cp[i])
		}
		evs = cp
	}
	ps, err := c.PublishBatch(context.WithValue(ctx, batchTraced{}, true), topicName, evs, opts...)
	if span.IsRecording() && err == nil && len(ps) > 0 {
		span.SetAttributes(attrPartition.String(strconv.Itoa(ps[0].Partition)))
	}
	endPublish(span, nil, Position{}, err)
	return ps, err
}

// startProcess starts the consumer span of one handler call: the child of
// the producer's context carried in the event's headers, linked to it too
// (so that it stays findable where a backend shows links only).
func (tr *tracing) startProcess(ctx context.Context, topic, group string, m *Message) (context.Context, trace.Span) {
	opts := make([]trace.SpanStartOption, 0, 3)
	opts = append(opts, trace.WithSpanKind(trace.SpanKindConsumer))
	if len(m.Headers) > 0 {
		pctx := tr.prop.Extract(ctx, propagation.MapCarrier(m.Headers))
		if psc := trace.SpanContextFromContext(pctx); psc.IsValid() {
			ctx = pctx
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: psc}))
		}
	}
	ctx, span := tr.tracer.Start(ctx, "process "+topic, opts...)
	if span.IsRecording() {
		span.SetAttributes(kvSystem, kvProcess, kvProcessOp, attrDestination.String(topic), attrGroup.String(group),
			attrPartition.String(strconv.Itoa(m.Partition)), attrMessageID.String(m.ID), attrPosition.String(m.Position),
			attrDeliveryCount.Int(m.Attempt), attrBodySize.Int(len(m.Data)))
		if m.Key != "" {
			span.SetAttributes(attrKey.String(m.Key))
		}
	}
	return ctx, span
}

// endProcess ends a consumer span with the handler's result.
func endProcess(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		if errors.Is(err, ErrRelease) {
			span.SetAttributes(attribute.Bool("messaging.herald.released", true))
		}
	}
	span.End()
}

// StartDeliverySpan starts a consumer span for delivering m to a remote
// party (the gateway's SSE, WebSocket and webhook deliveries use it): the
// child of the producer's context carried in m's headers, linked to it,
// with the messaging attributes of m and operation "deliver" over via. It
// returns ctx unchanged and a non-recording span when tracing is off. End
// the span with EndDeliverySpan.
func (c *Client) StartDeliverySpan(ctx context.Context, m *Message, via string) (context.Context, trace.Span) {
	if !c.tracing.on() {
		return ctx, noopSpan
	}
	ctx, span := c.tracing.startProcess(ctx, m.Topic, m.Group, m)
	if span.IsRecording() {
		span.SetName("deliver " + m.Topic)
		span.SetAttributes(attrOpName.String("deliver"), attribute.String("messaging.herald.via", via))
	}
	return ctx, span
}

// EndDeliverySpan ends a span of StartDeliverySpan, recording err when not
// nil. A span of a disabled tracer is left alone.
func (c *Client) EndDeliverySpan(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	endProcess(span, err)
}

// Propagator is the propagator the client writes trace context into event
// headers with (Config.Propagator, or the global one).
func (c *Client) Propagator() propagation.TextMapPropagator { return c.tracing.prop }

// TracerProvider is the provider the client makes spans with
// (Config.TracerProvider, or the global one).
func (c *Client) TracerProvider() trace.TracerProvider { return c.tracing.tp }

// Tracing reports whether the client makes spans now: false when its
// provider is a no-op one, or the global one while nothing has set it.
func (c *Client) Tracing() bool { return c.tracing.on() }
