// Package simulate generates a realistic, deterministic IoT fleet and its
// sensor readings: devices and locations, one reading per device per
// interval driven by a shared per-zone environment (weather, diurnal cycle,
// occupancy, machine load), with dropouts, outages and injected anomalies
// whose ground truth it returns. It does no I/O: time comes in as arguments
// and every random choice is derived from the seed.
//
// Determinism: each (seed, device, UTC day) has its own random stream, so a
// day generated alone is identical to the same day generated inside any
// longer range, and days can be generated in parallel in any order.
package simulate
