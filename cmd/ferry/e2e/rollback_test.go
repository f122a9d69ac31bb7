package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// prometheus is a real Prometheus reading its configuration through
// ferry's link, with its reload endpoint on.
type prometheus struct{ addr string }

// startPrometheus starts Prometheus on addr and returns once it is ready.
func startPrometheus(t testing.TB, addr, config string) *prometheus {
	t.Helper()
	bin := testkit.Tool(t, "prometheus", "prometheus")
	p := &prometheus{addr: addr}
	var out testkit.LogBuffer
	cmd := exec.Command(bin, "--config.file", config, "--web.listen-address", p.addr,
		"--web.enable-lifecycle", "--storage.tsdb.path", t.TempDir(), "--log.level", "warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", tail(out.String(), 20))
		}
	})
	testkit.Eventually(t, 30*time.Second, "prometheus ready", func() bool {
		return testkit.HTTPStatus("http://"+p.addr+"/-/ready") == http.StatusOK
	})
	return p
}

// config returns the configuration Prometheus runs on, as it shows it.
func (p *prometheus) config() string {
	resp, err := http.Get("http://" + p.addr + "/api/v1/status/config")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var body struct{ Data struct{ YAML string } }
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return ""
	}
	return body.Data.YAML
}

// promGen is a configuration Prometheus loads, marked with its generation.
func promGen(gen string) map[string]string {
	return map[string]string{"prometheus.yml": "global:\n  scrape_interval: 15s\n  external_labels:\n    gen: \"" + gen + "\"\n"}
}

// Prometheus answers 500 to /-/reload when it cannot load a config, and
// keeps the old one: ferry must take that as a refusal, put the previous
// revision back, tell Prometheus, hold the refused one back, and publish
// the next good one.
func TestRunRollsBackWhatPrometheusRefuses(t *testing.T) {
	testkit.Tool(t, "prometheus", "prometheus")
	o := newGitOrigin(t)
	o.set(t, 1, promGen("1"))
	root := t.TempDir()
	link := filepath.Join(root, "cfg")
	promAddr := testkit.FreeAddr(t)
	reload := "http://" + promAddr + "/-/reload"
	p := startFerry(t, procOptions{root: root, args: append(o.source("cfg"),
		"--period", "200ms", "--validate", "syntax", "--rollback-on-reject", "--reject-after", "2s",
		"--notify-url", reload, "--notify-timeout", "5s")})
	waitForGen(t, 20*time.Second, link, 1)
	prom := startPrometheus(t, promAddr, filepath.Join(link, "prometheus.yml"))
	if c := prom.config(); !strings.Contains(c, `gen: "1"`) {
		t.Fatalf("Prometheus runs on\n%s", c)
	}

	// Valid YAML, so --validate syntax passes it; Prometheus's strict
	// decoding refuses the misspelt field.
	o.set(t, 2, map[string]string{"prometheus.yml": "global:\n  scrape_intervall: 15s\n  external_labels:\n    gen: \"2\"\n"})
	testkit.Eventually(t, 30*time.Second, "the rejection in /status", func() bool { return p.status()["cfg"].RejectedRevision != "" })
	st := p.status()["cfg"]
	if want := "app: " + reload + ": notify: reply 500 Internal Server Error: failed to reload config"; !strings.HasPrefix(st.RejectedReason, want) {
		t.Errorf("/status rejected_reason = %q, want it to start with %q", st.RejectedReason, want)
	}
	if g, err := checkGeneration(link); err != nil || g != 1 {
		t.Errorf("ROOT/cfg is generation %d (%v) after the rollback, want 1", g, err)
	}
	if st.RejectedRevision == st.Revision {
		t.Errorf("/status: the rejected revision %s is the published one", st.Revision)
	}
	testkit.Eventually(t, 10*time.Second, "Prometheus told of the rollback", func() bool {
		return p.metric("ferry_notify_total", "target", reload, "result", "ok") >= 1
	})
	if c := prom.config(); !strings.Contains(c, `gen: "1"`) {
		t.Errorf("Prometheus runs on\n%s\nwant generation 1", c)
	}
	for _, m := range [][]string{
		{"ferry_rejected_total", "reason", "app"},
		{"ferry_rollbacks_total", "source", "cfg"},
	} {
		if v := p.metric(m[0], m[1:]...); v != 1 {
			t.Errorf("%s = %v, want 1", m, v)
		}
	}
	var lines []logRecord
	for _, r := range p.logs() {
		if strings.HasPrefix(r.str("msg"), "revision rejected by the app") {
			lines = append(lines, r)
		}
	}
	if len(lines) != 1 || lines[0].str("level") != "ERROR" || lines[0].str("reason") != "app" || lines[0].str("restored") != st.Revision {
		t.Errorf("want one ERROR line with reason app naming the revision restored, got %v", lines)
	}

	// Polls go on; the refused revision is not published again.
	unchanged := p.metric("ferry_syncs_total", "source", "cfg", "result", "unchanged")
	testkit.Eventually(t, 20*time.Second, "polls after the rollback", func() bool {
		return p.metric("ferry_syncs_total", "source", "cfg", "result", "unchanged") >= unchanged+3
	})
	if v := p.metric("ferry_syncs_total", "source", "cfg", "result", "published"); v != 2 {
		t.Errorf("ferry_syncs_total{result=published} = %v, want 2: the refused revision was published again", v)
	}

	o.set(t, 3, promGen("3"))
	waitForGen(t, 20*time.Second, link, 3)
	testkit.Eventually(t, 20*time.Second, "Prometheus on generation 3", func() bool { return strings.Contains(prom.config(), `gen: "3"`) })
	if st := p.status()["cfg"]; st.RejectedRevision != "" {
		t.Errorf("/status after a good revision still shows a rejection: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(link, "prometheus.yml")); err != nil {
		t.Error(err)
	}
}
