//go:build !race

package git_test

// raceDetector tells whether the tests run under the race detector.
const raceDetector = false
