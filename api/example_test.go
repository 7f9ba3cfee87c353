package api_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/etcdembed"
	"github.com/fleet-next/fleet/unit"
)

// exampleCluster serves the API of a one-machine cluster on a local HTTP
// server: a fresh embedded etcd (as fleetd --dev runs), a registry on it
// and the API handler fleetd mounts. It returns the endpoint to give
// api.NewClient and a function that tears everything down.
func exampleCluster() (endpoint string, stop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "fleet-example-")
	if err != nil {
		log.Fatal(err)
	}
	e, err := etcdembed.Start(ctx, etcdembed.Options{Dir: dir, Fast: true})
	if err != nil {
		log.Fatal(err)
	}
	cli, err := e.NewClient()
	if err != nil {
		log.Fatal(err)
	}
	reg := registry.FromClient(cli, "", nil)
	if _, err := reg.Register(ctx, unit.Machine{ID: "2c5f0d7a9e41", PublicIP: "10.0.0.7",
		Metadata: map[string]string{"region": "eu"}}, "example", time.Minute); err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(reg, api.Options{Version: "example"}))
	return srv.URL, func() {
		srv.Close()
		_ = cli.Close()
		e.Close()
		_ = os.RemoveAll(dir)
	}
}

// Submit a unit, start it, and read it back.
func ExampleClient_CreateUnit() {
	endpoint, stop := exampleCluster()
	defer stop()
	ctx := context.Background()

	c, err := api.NewClient(endpoint, api.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	hello := &api.Unit{Name: "hello.service", Options: []*api.UnitOption{
		{Section: "Unit", Name: "Description", Value: "Hello"},
		{Section: "Service", Name: "ExecStart", Value: "/bin/sleep 3600"},
	}}
	if err := c.CreateUnit(ctx, hello); err != nil {
		log.Fatal(err)
	}
	if err := c.SetUnitTargetState(ctx, "hello.service", "launched"); err != nil {
		log.Fatal(err)
	}
	u, err := c.Unit(ctx, "hello.service")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.Name, u.DesiredState)
	for _, o := range u.Options {
		fmt.Printf("[%s] %s=%s\n", o.Section, o.Name, o.Value)
	}
	// Output:
	// hello.service launched
	// [Unit] Description=Hello
	// [Service] ExecStart=/bin/sleep 3600
}

// A unit the cluster would not run is refused before anything is stored;
// the error carries the API's status code and message.
func ExampleError() {
	endpoint, stop := exampleCluster()
	defer stop()
	ctx := context.Background()

	c, err := api.NewClient(endpoint, api.ClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	err = c.CreateUnit(ctx, &api.Unit{Name: "sneaky.service", Options: []*api.UnitOption{
		{Section: "Service", Name: "ExecStart", Value: "/bin/sleep 9\rExecStartPre=/bin/touch /tmp/x"},
	}})
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.Code, apiErr.Message)
	}
	u, err := c.Unit(ctx, "sneaky.service")
	fmt.Println(u == nil, err)
	// Output:
	// 400 value of ExecStart in [Service] holds the control character '\r', which systemd would not read as part of the value
	// true <nil>
}

// List the units of the cluster; the client follows the page tokens.
func ExampleClient_Units() {
	endpoint, stop := exampleCluster()
	defer stop()
	ctx := context.Background()

	c, err := api.NewClient(endpoint, api.ClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"web@1.service", "web@2.service", "web@.service"} {
		err := c.CreateUnit(ctx, &api.Unit{Name: name, Options: []*api.UnitOption{
			{Section: "Service", Name: "ExecStart", Value: "/bin/sleep infinity"},
		}})
		if err != nil {
			log.Fatal(err)
		}
	}
	units, err := c.Units(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, u := range units {
		fmt.Println(u.Name, u.DesiredState, u.CurrentState)
	}
	// Output:
	// web@.service inactive inactive
	// web@1.service inactive inactive
	// web@2.service inactive inactive
}

// Label a machine with dynamic metadata, which scheduling sees at once.
func ExampleClient_PatchMachineMetadata() {
	endpoint, stop := exampleCluster()
	defer stop()
	ctx := context.Background()

	c, err := api.NewClient(endpoint, api.ClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.PatchMachineMetadata(ctx, "2c5f0d7a9e41", map[string]string{"disk": "ssd"}, []string{"region"}); err != nil {
		log.Fatal(err)
	}
	machines, err := c.Machines(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range machines {
		fmt.Println(m.ID, m.PrimaryIP, m.Metadata)
	}
	err = c.PatchMachineMetadata(ctx, "no-such-machine", map[string]string{"disk": "ssd"}, nil)
	fmt.Println(api.IsNotFound(err))
	// Output:
	// 2c5f0d7a9e41 10.0.0.7 map[disk:ssd]
	// true
}

// WithObserver reports every request the handler answered, with its
// route: what fleetd's metrics count.
func ExampleWithObserver() {
	h := api.WithObserver(api.NewHandler(nil, api.Options{}), func(method, route string, code int, _ time.Duration) {
		fmt.Println(method, route, code)
	})
	for _, path := range []string{"/health", "/", "/nowhere"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	// Output:
	// GET /health 200
	// GET / 405
	// GET other 404
}
