package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// requestMetric counts the messages etcd's gRPC server received, by method:
// one per unary call (Range, Put, Txn, LeaseGrant, ...) and one per message
// on a stream (each lease keep-alive, each watch create or cancel).
const requestMetric = "grpc_server_msg_received_total"

// requests is a count of etcd requests by gRPC method.
type requests map[string]float64

// Total sums every method.
func (r requests) Total() float64 {
	var t float64
	for _, v := range r {
		t += v
	}
	return t
}

// Sub returns r - base per method, dropping methods without change.
func (r requests) Sub(base requests) requests {
	out := requests{}
	for m, v := range r {
		if d := v - base[m]; d != 0 {
			out[m] = d
		}
	}
	return out
}

// Add returns r + o per method.
func (r requests) Add(o requests) requests {
	out := maps.Clone(r)
	if out == nil {
		out = requests{}
	}
	for m, v := range o {
		out[m] += v
	}
	return out
}

// String lists methods by count, largest first.
func (r requests) String() string {
	ms := slices.Collect(maps.Keys(r))
	slices.SortFunc(ms, func(a, b string) int {
		if r[a] != r[b] {
			if r[a] > r[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s %.0f", m, r[m]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// scrapeRequests reads etcd's Prometheus endpoint (<endpoint>/metrics).
func scrapeRequests(ctx context.Context, hc *http.Client, endpoint string) (requests, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("scrape etcd metrics: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape etcd metrics: %s", resp.Status)
	}
	r, err := parseRequests(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape etcd metrics: %w", err)
	}
	return r, nil
}

// parseRequests picks requestMetric out of Prometheus text exposition.
func parseRequests(body io.Reader) (requests, error) {
	out := requests{}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := false
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, requestMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("malformed sample %q", line)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("malformed sample %q: %w", line, err)
		}
		method := label(labels, "grpc_method")
		if method == "" {
			return nil, fmt.Errorf("sample without grpc_method: %q", line)
		}
		out[method] += v
		seen = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !seen {
		return nil, fmt.Errorf("no %s samples", requestMetric)
	}
	return out, nil
}

// label returns the value of name in a Prometheus label list.
func label(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
