package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldbus/herald"
)

// Defaults of Webhook.
const (
	DefaultWebhookTimeout     = 10 * time.Second
	DefaultWebhookConcurrency = 4
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
	SignatureHeader = "Herald-Signature"
)

// Webhook is a push subscription: each event of Topic is POSTed to URL as a
// CloudEvent by the consumer group Group: structured
// (application/cloudevents+json) by default, or in binary mode (Format
// cloudevents-binary: attributes in ce-* headers, the payload as the body
// with its own content type). A 2xx answer acknowledges the event; 408, 429, 5xx and
// network errors are retried with exponential backoff (the group's retry
// schedule, which survives restarts); any other answer is permanent and
// dead-letters the event at once. After MaxAttempts the event is
// dead-lettered as well.
type Webhook struct {
	// Name identifies the webhook in logs, headers and metrics.
	Name string `yaml:"name"`
	// Topic is the topic delivered.
	Topic string `yaml:"topic"`
	// Group is the consumer group (default "webhook-<name>").
	Group string `yaml:"group"`
	// URL receives the POSTs (http or https).
	URL string `yaml:"url"`
	// Secret keys the HMAC-SHA256 signature; empty: requests are unsigned.
	// It is never logged.
	Secret string `yaml:"secret"`
	// Filter is a CEL condition; only matching events are POSTed.
	Filter string `yaml:"filter"`
	// From is where a new group starts: now (default) or beginning.
	From string `yaml:"from"`
	// Timeout bounds one POST (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts is the number of tries before the event is dead-lettered (default 8).
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the first retry delay and MaxBackoff its cap (defaults 1s and 5m).
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Concurrency is the number of POSTs in flight (default 4).
	Concurrency int `yaml:"concurrency"`
	// MaxInFlight bounds events read ahead of the POSTs (default: the
	// library's); at shutdown these are delivered before the process exits.
	MaxInFlight int `yaml:"max_in_flight"`
	// Headers are added to every request.
	Headers map[string]string `yaml:"headers"`
	// Format is how events are POSTed: cloudevents (the default, structured
	// mode) or cloudevents-binary (HTTP binary mode).
	Format string `yaml:"format"`
}

// Webhook formats.
const (
	WebhookFormatStructured = "cloudevents"
	WebhookFormatBinary     = "cloudevents-binary"
)

func (w *Webhook) fill() error {
	if w.Name == "" {
		return errors.New("a webhook has no name; give each webhook a name")
	}
	where := fmt.Sprintf("webhook %q", w.Name)
	if err := herald.ValidateName("topic", w.Topic); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if w.Group == "" {
		w.Group = "webhook-" + w.Name
	}
	if err := herald.ValidateName("group", w.Group); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: url %q is not an http(s) URL; use https://host/path", where, redactURL(w.URL))
	}
	if w.From != "" && w.From != "now" && w.From != "beginning" {
		return fmt.Errorf("%s: from %q: use now or beginning", where, w.From)
	}
	switch w.Format {
	case "":
		w.Format = WebhookFormatStructured
	case WebhookFormatStructured, WebhookFormatBinary:
	default:
		return fmt.Errorf("%s: format %q: use %s (structured, the default) or %s", where, w.Format, WebhookFormatStructured, WebhookFormatBinary)
	}
	if w.Timeout <= 0 {
		w.Timeout = DefaultWebhookTimeout
	}
	if w.Concurrency <= 0 {
		w.Concurrency = DefaultWebhookConcurrency
	}
	if w.MaxAttempts < 0 || w.MaxInFlight < 0 || w.Backoff < 0 || w.MaxBackoff < 0 {
		return fmt.Errorf("%s: max_attempts, max_in_flight, backoff and max_backoff must not be negative", where)
	}
	return nil
}

// redactURL drops credentials and the query from a URL (they may hold secrets).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a SignatureHeader value against body, in constant
// time, and that its timestamp is within tolerance of now (0: not checked).
func VerifySignature(secret, header string, body []byte, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("herald: malformed signature header; expected t=<unix>,v1=<hex>")
	}
	t := time.Unix(sec, 0)
	if tolerance > 0 && (time.Since(t) > tolerance || time.Until(t) > tolerance) {
		return errors.New("herald: signature timestamp outside the tolerance")
	}
	want := Sign(secret, t, body)
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return errors.New("herald: signature mismatch")
	}
	return nil
}

// isTimeout reports whether a POST failed by timing out.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

type webhookRunner struct {
	g      *Gateway
	cfg    Webhook
	client *http.Client
	sub    *herald.Subscription
	target string // redacted URL for logs and errors
}

func (g *Gateway) startWebhook(ctx context.Context, cfg Webhook) (*webhookRunner, error) {
	h := &webhookRunner{g: g, cfg: cfg, target: redactURL(cfg.URL), client: &http.Client{
		Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is an answer, not followed
		},
	}}
	opts := []herald.SubscribeOption{herald.Concurrency(cfg.Concurrency), herald.Consumer("webhook-" + cfg.Name + "-" + g.sessions.instance),
		herald.VisibilityTimeout(max(herald.DefaultVisibilityTimeout, 3*cfg.Timeout))}
	if cfg.MaxInFlight > 0 {
		opts = append(opts, herald.MaxInFlight(cfg.MaxInFlight))
	}
	if cfg.MaxAttempts > 0 {
		opts = append(opts, herald.MaxAttempts(cfg.MaxAttempts))
	}
	if cfg.Backoff > 0 || cfg.MaxBackoff > 0 {
		b, mb := cfg.Backoff, cfg.MaxBackoff
		if b == 0 {
			b = herald.DefaultRetryBackoff
		}
		if mb == 0 {
			mb = max(b, herald.DefaultMaxRetryBackoff)
		}
		opts = append(opts, herald.Backoff(b, mb))
	}
	if cfg.From == "beginning" {
		opts = append(opts, herald.From(herald.StartBeginning))
	}
	if cfg.Filter != "" {
		opts = append(opts, herald.Filter(cfg.Filter))
	}
	sub, err := g.c.Subscribe(context.WithoutCancel(ctx), cfg.Topic, cfg.Group, h, opts...) // runs until Shutdown
	if err != nil {
		return nil, fmt.Errorf("gateway: webhook %q: %w", cfg.Name, err)
	}
	h.sub = sub
	g.metrics.subs.add(sub, subLabels{topic: cfg.Topic, group: cfg.Group, via: "webhook"})
	go func() { <-sub.Done(); g.metrics.subs.remove(sub) }()
	g.log.Info("webhook started", "webhook", cfg.Name, "topic", cfg.Topic, "group", cfg.Group, "url", h.target)
	return h, nil
}

// Handle POSTs one event and logs a failed attempt with what happens next.
// It implements herald.Handler.
func (h *webhookRunner) Handle(ctx context.Context, m *herald.Message) error {
	err := h.post(ctx, m)
	if err != nil && ctx.Err() == nil {
		maxAttempts := h.cfg.MaxAttempts
		if maxAttempts <= 0 {
			maxAttempts = herald.DefaultMaxAttempts
		}
		attrs := []any{"webhook", h.cfg.Name, "topic", m.Topic, "group", m.Group, "position", m.Pos().String(),
			"event_id", m.ID, "attempt", m.Attempt, "max_attempts", maxAttempts, "err", err}
		if herald.IsPermanent(err) || m.Attempt >= maxAttempts {
			h.g.log.Warn("webhook delivery failed; the event goes to the dead letters", attrs...)
		} else {
			lo, hi := h.retryWindow(m.Attempt)
			now := time.Now()
			h.g.log.Warn("webhook delivery failed; retrying", append(attrs,
				"next_retry_after", now.Add(lo).UTC().Format(time.RFC3339Nano), "next_retry_before", now.Add(hi).UTC().Format(time.RFC3339Nano))...)
		}
	}
	return err
}

// retryWindow is when the next try of a failed attempt comes: the
// subscription's backoff doubles from Backoff up to MaxBackoff, with jitter
// in its upper half.
func (h *webhookRunner) retryWindow(attempt int) (lo, hi time.Duration) {
	d, mb := h.cfg.Backoff, h.cfg.MaxBackoff
	if d <= 0 {
		d = herald.DefaultRetryBackoff
	}
	if mb <= 0 {
		mb = max(d, herald.DefaultMaxRetryBackoff)
	}
	for i := 1; i < attempt && d < mb; i++ {
		d *= 2
	}
	d = min(d, mb)
	return d / 2, d
}

func (h *webhookRunner) post(ctx context.Context, m *herald.Message) error {
	binary := h.cfg.Format == WebhookFormatBinary
	var body []byte
	if binary {
		body = m.Data
	} else {
		body = encodeCloudEventMessage(m)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return herald.Permanent(fmt.Errorf("webhook %s: %v", h.cfg.Name, err))
	}
	hd := req.Header
	for k, v := range h.cfg.Headers {
		hd.Set(k, v)
	}
	if binary {
		setBinaryHeaders(hd, m) // cloudevents_out.go
	} else {
		hd.Set("Content-Type", mediaCE)
	}
	hd.Set("User-Agent", "herald-webhook")
	hd.Set("Herald-Webhook", h.cfg.Name)
	hd.Set("Herald-Topic", m.Topic)
	hd.Set("Herald-Group", m.Group)
	hd.Set("Herald-Position", m.Pos().String())
	hd.Set("Herald-Attempt", strconv.Itoa(m.Attempt))
	// An event id may hold any byte, a header value may not (a CR or LF
	// fails every POST): it is percent-encoded as ce-id is in binary mode
	// (space, '"', '%' and bytes outside printable ASCII).
	hd.Set("Herald-Event-Id", ceHeaderEscape(eventID(m)))
	// Trace context stored by another producer is passed on only when valid.
	if tp := m.Headers["traceparent"]; traceparentRE.MatchString(tp) {
		hd.Set("traceparent", tp)
		if ts := m.Headers["tracestate"]; ts != "" && printableASCII(ts) {
			hd.Set("tracestate", ts)
		}
	}
	if h.cfg.Secret != "" {
		hd.Set(SignatureHeader, Sign(h.cfg.Secret, time.Now(), body))
	}
	h.g.metrics.observeDelivery(m, "webhook")
	start := time.Now()
	resp, err := h.doTraced(req, m) // tracing.go
	h.g.metrics.webhookDuration.WithLabelValues(h.cfg.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		outcome := herald.OutcomeError
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			outcome = herald.OutcomeTimeout
		}
		h.g.metrics.delivered.WithLabelValues(m.Topic, m.Group, "webhook", outcome).Inc()
		// The URL may hold secrets: report the redacted one.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook %s: POST %s: %v", h.cfg.Name, h.target, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		h.g.metrics.delivered.WithLabelValues(m.Topic, m.Group, "webhook", herald.OutcomeOK).Inc()
		return nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		h.g.metrics.delivered.WithLabelValues(m.Topic, m.Group, "webhook", herald.OutcomeError).Inc()
		return fmt.Errorf("webhook %s: POST %s answered %d; retrying", h.cfg.Name, h.target, c)
	default:
		h.g.metrics.delivered.WithLabelValues(m.Topic, m.Group, "webhook", herald.OutcomeError).Inc()
		return herald.Permanent(fmt.Errorf("webhook %s: POST %s answered %d (permanent: not retried)", h.cfg.Name, h.target, c))
	}
}

// printableASCII reports a string of printable ASCII and spaces only, safe
// as a header value as it is.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
