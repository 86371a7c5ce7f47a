package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestMain runs the tests against $GATEHOUSE_BIN, or a binary built once.
func TestMain(m *testing.M) { testenv.GatehouseMain(m) }

// start runs the gatehouse binary with args until the test ends.
func start(t testing.TB, name string, args ...string) *testenv.Proc {
	t.Helper()
	return testenv.Gatehouse(name, args...).Start(t)
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// echoName sends GET url and returns the X-Echo-Name of the answering
// backend ("" with the status when no echo backend answered).
func echoName(url string) (string, int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-Echo-Name"), resp.StatusCode, nil
}

// getJSON decodes a JSON answer of url into v and returns the status.
func getJSON(url string, v any) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}
