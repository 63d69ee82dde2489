"""Cost (params, MACs, size, latency) and quality (Frechet distance) metrics."""
