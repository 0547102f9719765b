// Package adapter holds the I/O of iot-etl: PostgreSQL and MySQL (store),
// Kafka (kafka, producer), Temporal (temporalx), object storage (export)
// and the connectivity probes (health). Adapters translate between the
// outside world and the domain types; they may import domain/ and
// platform/, never activities/ or workflows/.
package adapter
