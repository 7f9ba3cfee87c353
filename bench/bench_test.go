package bench

import (
	"maps"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseRequests(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    requests
		wantErr bool
	}{
		{
			name: "unary and stream methods summed over label sets",
			body: `# HELP grpc_server_msg_received_total Total number of RPC stream messages received on the server.
# TYPE grpc_server_msg_received_total counter
grpc_server_msg_received_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 12
grpc_server_msg_received_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"} 3
grpc_server_msg_received_total{grpc_method="Put",grpc_service="other.KV",grpc_type="unary"} 1
grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 12
`,
			want: requests{"Put": 13, "LeaseKeepAlive": 3},
		},
		{name: "no samples", body: "# nothing here\n", wantErr: true},
		{name: "bad value", body: `grpc_server_msg_received_total{grpc_method="Put"} x` + "\n", wantErr: true},
		{name: "no method label", body: `grpc_server_msg_received_total{grpc_type="unary"} 1` + "\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequests(strings.NewReader(tc.body))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if !tc.wantErr && !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRequestsArithmetic(t *testing.T) {
	a := requests{"Put": 10, "Txn": 2, "Range": 1}
	b := requests{"Put": 4, "Range": 1}
	tests := []struct {
		name string
		got  requests
		want requests
	}{
		{"sub drops unchanged methods", a.Sub(b), requests{"Put": 6, "Txn": 2}},
		{"add", b.Add(requests{"Txn": 1}), requests{"Put": 4, "Range": 1, "Txn": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !maps.Equal(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	if got := a.Total(); got != 13 {
		t.Errorf("Total = %v, want 13", got)
	}
	if got := a.Sub(b).String(); got != "Put 6, Txn 2" {
		t.Errorf("String = %q", got)
	}
}

func TestSummarize(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100, 99, ..., 1: unsorted input
	}
	tests := []struct {
		name string
		in   []time.Duration
		want latencies
	}{
		{"empty", nil, latencies{}},
		{"one", ms(7), latencies{N: 1, P50: 7 * time.Millisecond, P90: 7 * time.Millisecond, P99: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		{"nearest rank of 1..100", ms(hundred...), latencies{N: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond,
			P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarize(tc.in); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNum(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567.4, "1,234,567"}, {-20000, "-20,000"},
	}
	for _, tc := range tests {
		if got := num(tc.in); got != tc.want {
			t.Errorf("num(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSampleProcSelf(t *testing.T) {
	s, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.HWM < s.RSS {
		t.Errorf("RSS %d, peak %d: want a positive RSS no larger than the peak", s.RSS, s.HWM)
	}
}
