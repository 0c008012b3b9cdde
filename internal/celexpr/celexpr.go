// Package celexpr compiles and evaluates the CEL conditions of routing rules
// and subscription filters over an event.
//
// Variables: id, type, source, subject, key, content_type (strings),
// headers (map of strings), time (timestamp) and data: the payload parsed as
// JSON when it is JSON (by content type, or when it starts with { or [), else
// the payload as a string. A condition that reads a field the event does not
// have (data.category on an event without it, headers["x"] when absent)
// evaluates to false: it never fails the publish or the subscription.
package celexpr

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// Vars is the event a condition is evaluated over.
type Vars struct {
	ID, Type, Source, Subject, Key, ContentType string
	Headers                                     map[string]string
	Time                                        time.Time
	Data                                        []byte
}

// Program is a compiled condition. It is safe for concurrent use.
type Program struct {
	src      string
	prg      cel.Program
	usesData bool
	loops    bool // has a looping macro: evaluated under EvalTimeout
}

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

func environment() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(
			cel.Variable("id", cel.StringType),
			cel.Variable("type", cel.StringType),
			cel.Variable("source", cel.StringType),
			cel.Variable("subject", cel.StringType),
			cel.Variable("key", cel.StringType),
			cel.Variable("content_type", cel.StringType),
			cel.Variable("headers", cel.MapType(cel.StringType, cel.StringType)),
			cel.Variable("time", cel.TimestampType),
			cel.Variable("data", cel.DynType),
		)
	})
	return env, envErr
}

// CompileError is a condition that does not compile, with the position of
// the first problem within the expression (1-based line and column).
type CompileError struct {
	Expr         string
	Line, Column int
	Message      string
}

// Error returns the position and the message.
func (e *CompileError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// Compile parses and type-checks expr, which must yield a bool.
func Compile(expr string) (*Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &CompileError{Expr: expr, Line: 1, Column: 1, Message: "empty condition; write a CEL expression such as type == \"order.created\""}
	}
	e, err := environment()
	if err != nil {
		return nil, err
	}
	ast, iss := e.Compile(expr)
	if iss != nil && iss.Err() != nil {
		ce := &CompileError{Expr: expr, Line: 1, Column: 1, Message: iss.Err().Error()}
		if errs := iss.Errors(); len(errs) > 0 {
			loc := errs[0].Location
			ce.Line, ce.Column, ce.Message = loc.Line(), loc.Column()+1, errs[0].Message
		}
		return nil, ce
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, &CompileError{Expr: expr, Line: 1, Column: 1,
			Message: fmt.Sprintf("the condition yields %s, not bool; compare it, e.g. (%s) != \"\"", ast.OutputType(), expr)}
	}
	loops := loopMacro.MatchString(expr)
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if loops {
		opts = append(opts, cel.InterruptCheckFrequency(64))
	}
	prg, err := e.Program(ast, opts...)
	if err != nil {
		return nil, &CompileError{Expr: expr, Line: 1, Column: 1, Message: err.Error()}
	}
	return &Program{src: expr, prg: prg, usesData: strings.Contains(expr, "data"), loops: loops}, nil
}

// EvalTimeout bounds one evaluation of a condition that loops (the
// macros all, exists, exists_one, map and filter, the only loops in CEL):
// one that runs longer on an event, such as a comprehension nested in
// another over a large payload, stops (checked every 64 iterations) and
// counts as an evaluation error (no match). The payload comes from
// publishers; without a bound one event could hold a subscriber's worker
// for hours. A condition without a loop costs in proportion to its size
// and needs no bound. (CEL's own cost limit was measured first: its
// tracker made a single scan of a 20,000-element list take 430 ms.)
const EvalTimeout = 250 * time.Millisecond

// loopMacro finds a call of a looping macro in a condition's source.
var loopMacro = regexp.MustCompile(`\b(all|exists|exists_one|map|filter)\s*\(`)

// String returns the source expression.
func (p *Program) String() string { return p.src }

// ErrEval wraps evaluation problems (a missing field, a type mismatch).
var ErrEval = errors.New("celexpr: evaluation failed")

// Match evaluates the condition. A missing field or any evaluation error
// yields false together with an error wrapping ErrEval, for counting.
func (p *Program) Match(a *Activation) (bool, error) {
	var out ref.Val
	var err error
	if p.loops {
		ctx, cancel := context.WithTimeout(context.Background(), EvalTimeout)
		out, _, err = p.prg.ContextEval(ctx, a)
		cancel()
	} else {
		out, _, err = p.prg.Eval(a)
	}
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrEval, err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%w: the condition yielded %v, not a bool", ErrEval, out.Type())
	}
	return bool(b), nil
}

// Activation resolves the variables of one event; the payload is parsed at
// most once, and only when a condition reads data. Reuse it across the
// rules evaluated for one event.
type Activation struct {
	v        *Vars
	parsed   bool
	data     any
	timeVal  types.Timestamp
	timeDone bool
}

var emptyHeaders = map[string]string{}

// NewActivation prepares v for evaluation.
func NewActivation(v *Vars) *Activation { return &Activation{v: v} }

// ResolveName implements interpreter.Activation.
func (a *Activation) ResolveName(name string) (any, bool) {
	v := a.v
	switch name {
	case "id":
		return v.ID, true
	case "type":
		return v.Type, true
	case "source":
		return v.Source, true
	case "subject":
		return v.Subject, true
	case "key":
		return v.Key, true
	case "content_type":
		return v.ContentType, true
	case "headers":
		if v.Headers == nil {
			return emptyHeaders, true
		}
		return v.Headers, true
	case "time":
		if !a.timeDone {
			a.timeVal, a.timeDone = types.Timestamp{Time: v.Time}, true
		}
		return a.timeVal, true
	case "data":
		if !a.parsed {
			a.parsed = true
			a.data = parseData(v.ContentType, v.Data)
		}
		return a.data, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *Activation) Parent() interpreter.Activation { return nil }

func parseData(contentType string, data []byte) any {
	trimmed := strings.TrimSpace(string(data))
	isJSON := strings.Contains(contentType, "json") || strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[")
	if isJSON {
		if v, err := parseJSON(data); err == nil {
			return v
		}
	}
	return string(data)
}
