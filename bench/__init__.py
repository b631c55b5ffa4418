"""Benchmarks of the realtime fanout and the whole path, side by side with Nchan."""
