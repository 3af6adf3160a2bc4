//go:build race

package mesh_test

// raceBuild: the tests run under the race detector, several times slower.
const raceBuild = true
