"""Local environment shared by the demo, the integration tests and the benchmarks."""
