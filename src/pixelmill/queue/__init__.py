"""The durable queue: the task table, claims with leases, workers and the scheduler."""
