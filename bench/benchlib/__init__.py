"""The benchmark harness behind bench/run: peers, bridges, workloads, report."""
