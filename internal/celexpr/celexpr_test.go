package celexpr

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// A condition whose cost grows with the square of a hostile payload stops
// at EvalTimeout, as an evaluation error; an ordinary scan of a large list
// ends well within it.
func TestEvaluationTimeIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"a":[`)
	for i := range 20000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("1")
	}
	b.WriteString(`]}`)
	v := &Vars{Type: "t", Data: []byte(b.String())}

	nested, err := Compile(`data.a.exists(x, data.a.exists(y, y == -1))`)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ok, err := nested.Match(NewActivation(v))
	if ok || !errors.Is(err, ErrEval) {
		t.Fatalf("nested scan of 20,000 x 20,000: %v, %v; want no match and ErrEval (timeout)", ok, err)
	}
	t.Logf("nested: %v after %v", err, time.Since(start))
	if took := time.Since(start); took > 4*EvalTimeout {
		t.Fatalf("the evaluation was stopped after %v, EvalTimeout is %v", took, EvalTimeout)
	}

	scan, err := Compile(`data.a.exists(x, x == -1) || type == "t"`)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	ok, err = scan.Match(NewActivation(v))
	t.Logf("scan: %v", time.Since(start))
	if !ok || err != nil {
		t.Fatalf("one scan of 20,000: %v, %v; want a match", ok, err)
	}
}
