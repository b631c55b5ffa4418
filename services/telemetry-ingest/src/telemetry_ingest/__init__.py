"""telemetry-ingest: receives, stores and summarises the sampled browser telemetry."""
