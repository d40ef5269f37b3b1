package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// chromiumPath finds headless Chromium; CI installs it, so there a missing
// browser fails the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (.ci/run installs the chromium package)")
	}
	t.Skip("chromium not installed")
	return ""
}

// chromium runs headless Chromium on url with args, letting the page's
// scripts run for budget of virtual time, and returns what it printed.
func chromium(t *testing.T, url string, budget time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds())}, args...)
	out, err := exec.CommandContext(ctx, chromiumPath(t), append(all, url)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

// The web console of a 3-broker cluster, loaded in a real browser while a
// producer writes: the topic table lists the topic with its partitions and
// records, the brokers table every broker, and both charts have points.
// A screenshot is saved (SKEIN_SCREENSHOT names the file; default under
// the test's temporary directory).
func TestConsoleInBrowser(t *testing.T) {
	chromiumPath(t)
	c := proctest.StartCluster(t, 3)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 6, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	c.WaitHealthy(30 * time.Second)
	p, err := cl.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a steady producer, bounded in time and count
		defer close(done)
		for i := 0; i < 200_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := p.ProduceSync(ctx, &client.Record{Topic: "orders", Key: []byte(strconv.Itoa(i)), Value: []byte("order")}); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	url := "http://" + c.Brokers[1].HTTPAddr + "/ui/"

	dom := chromium(t, url, 8*time.Second, "--dump-dom")
	if !strings.Contains(dom, `data-topic="orders"`) {
		t.Fatalf("the topic table has no row for orders:\n%s", dom)
	}
	row := regexp.MustCompile(`<tr class="topic" data-topic="orders"><td>orders</td><td>6</td><td>3</td><td>2</td><td>7d</td><td>(\d+)</td>`).FindStringSubmatch(dom)
	if row == nil {
		t.Fatalf("the orders row does not show 6 partitions, replication 3, min ISR 2, retention 7d and a record count:\n%s", dom)
	}
	if n, _ := strconv.Atoi(row[1]); n == 0 {
		t.Errorf("the orders row shows no records while a producer writes")
	}
	for _, id := range []string{"1", "2", "3"} {
		if !strings.Contains(dom, `data-broker="`+id+`"`) {
			t.Errorf("the brokers table has no row for broker %s", id)
		}
	}
	for _, chart := range []string{"chart-throughput", "chart-urp"} {
		m := regexp.MustCompile(`id="` + chart + `"[^>]*data-points="(\d+)"`).FindStringSubmatch(dom)
		if m == nil || m[1] == "0" {
			t.Errorf("chart %s has no points", chart)
		}
	}
	if !strings.Contains(dom, `class="badge ok">healthy<`) {
		t.Errorf("the health badge does not say healthy")
	}

	shot := os.Getenv("SKEIN_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "console.png")
	}
	chromium(t, url, 10*time.Second, "--window-size=1400,1000", "--screenshot="+shot)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}
