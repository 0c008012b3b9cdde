package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/heraldbus/herald"
)

// Error codes of the JSON error body {"error":{"code":...,"message":...}}.
// docs/http-api.md lists them with their HTTP statuses.
const (
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeInvalidRequest       = "invalid_request"
	CodePayloadTooLarge      = "payload_too_large"
	CodeEventTooLarge        = "event_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeTopicNotFound        = "topic_not_found"
	CodeGroupNotFound        = "group_not_found"
	CodeSessionNotFound      = "session_not_found"
	CodeNoRules              = "no_rules"
	CodePublishTimeout       = "publish_timeout"
	CodeNotReplicated        = "not_replicated"
	CodeUnavailable          = "unavailable"
	CodeShuttingDown         = "shutting_down"
	CodeInternal             = "internal"
	CodeHostNotAllowed       = "host_not_allowed"
	CodeCrossOrigin          = "cross_origin"
	CodeTooManyConnections   = "too_many_connections"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeTooManyRequests      = "too_many_requests"
	CodeTooManyGroups        = "too_many_groups"
	CodeGroupOptionsConflict = "group_options_conflict"
	CodeAckTimeout           = "ack_timeout"
)

// apiError is an error with an HTTP status and a code for the JSON body.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, CodeInvalidRequest, format, args...)
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError writes err as a JSON error response, mapping Herald's sentinel
// errors to statuses. It returns the status written.
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, err error) int {
	ae := g.classify(err)
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	}
	var b errorBody
	b.Error.Code, b.Error.Message = ae.Code, ae.Message
	writeJSON(w, ae.Status, b)
	return ae.Status
}

// classify turns any error into an apiError. Errors that come from Redis
// (not bad input, not a sentinel) are counted in the Redis error metric.
func (g *Gateway) classify(err error) *apiError {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, CodePayloadTooLarge,
			"request body is larger than %d bytes; send fewer events per request or raise max_body_bytes in the server config", mbe.Limit)
	case errors.Is(err, herald.ErrTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, CodeEventTooLarge, "%v; send a smaller event or create the topic with a larger max_event_bytes", err)
	case errors.Is(err, herald.ErrInvalid):
		return errorf(http.StatusBadRequest, CodeInvalidRequest, "%v", err)
	case errors.Is(err, herald.ErrTopicNotFound):
		return errorf(http.StatusNotFound, CodeTopicNotFound, "%v; publish to it or create it with PUT /v1/topics/{topic}", err)
	case errors.Is(err, herald.ErrGroupNotFound):
		return errorf(http.StatusNotFound, CodeGroupNotFound, "%v; subscribe with that group first, or pick another group", err)
	case errors.Is(err, herald.ErrPublishTimeout):
		g.metrics.redisErrors.Inc()
		return errorf(http.StatusServiceUnavailable, CodePublishTimeout,
			"%v; the outcome is unknown: publish again with the same Idempotency-Key (or event ids), which stores each event once", err)
	case errors.Is(err, herald.ErrNotReplicated):
		return errorf(http.StatusServiceUnavailable, CodeNotReplicated, "%v; the events are stored on the master; retry later or publish with durability=memory", err)
	case errors.Is(err, herald.ErrClosed):
		return errorf(http.StatusServiceUnavailable, CodeShuttingDown, "the server is shutting down; retry against another instance or after the restart")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the request was cancelled or timed out before Redis answered (%v); retry", err)
	}
	g.metrics.redisErrors.Inc()
	return errorf(http.StatusServiceUnavailable, CodeUnavailable, "Redis did not complete the request: %v; retry, and check /readyz", err)
}

// tooLarge reports an error met reading a body over max_body_bytes
// (classify answers it with 413).
func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// readBody reads r's whole body. A body over max_body_bytes gives the
// *http.MaxBytesError (413); any other read error (a malformed chunked
// encoding, a body shorter than its Content-Length, a client gone) is the
// client's: 400, never counted as a Redis error.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if tooLarge(err) {
			return nil, err
		}
		return nil, badRequest("the request body could not be read (%v); send the whole body, with a correct Content-Length or chunked encoding", err)
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":{"code":"internal","message":"could not encode the response"}}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

var errEOF = io.EOF
