package heraldprom_test

import (
	"context"
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/heraldprom"
)

// A program serves its Herald client's metrics next to its own.
func ExampleNewCollector() {
	c, err := herald.New(context.Background(), herald.Config{URL: "redis://127.0.0.1:6379"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(heraldprom.NewCollector(c))
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
