package api

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestStreamWriterMovesTheWriteDeadline streams chunks for ten times the
// server's write timeout: every chunk must arrive.
func TestStreamWriterMovesTheWriteDeadline(t *testing.T) {
	const timeout = 50 * time.Millisecond
	const chunks = 10
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := newStreamWriter(w)
		w.WriteHeader(http.StatusOK)
		for i := range chunks {
			time.Sleep(timeout) // each chunk comes after the server's write timeout
			if _, err := fmt.Fprintf(sw, "line %d\n", i); err != nil {
				return
			}
			sw.Flush()
		}
	}))
	srv.Config.WriteTimeout = timeout
	srv.Start()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		if want := fmt.Sprintf("line %d", n); sc.Text() != want {
			t.Fatalf("got %q, want %q", sc.Text(), want)
		}
		n++
	}
	if n != chunks {
		t.Fatalf("received %d of %d chunks (%v)", n, chunks, sc.Err())
	}
}
