//go:build !race

package e2e_test

// raceBuild: the tests run under the race detector, several times slower.
const raceBuild = false
