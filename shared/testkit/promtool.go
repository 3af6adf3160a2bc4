package testkit

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"testing"
)

// Promtool checks the exposition at url with Prometheus's own linter,
// `promtool check metrics` (Debian's prometheus package ships it): names,
// units, help texts and label conventions. It fails the test in CI (which
// installs it) and skips the check elsewhere without it.
func Promtool(t testing.TB, url string) {
	t.Helper()
	exe, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no promtool on the PATH: .ci/run installs it (apt-get install prometheus)")
		}
		t.Log("no promtool on the PATH (apt-get install prometheus): the exposition is not linted")
		return
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics %s: %v\n%s", url, err, out)
	}
}
