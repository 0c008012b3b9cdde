//go:build race

package watermill_test

func init() { raceDetector = true }
