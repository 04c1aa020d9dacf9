"""The durable engine: the pure fold of a run's events (``state``) and its planner, the run
driver that commits every transition before it takes effect, the scheduler with leases, the
runner seam, budgets and meters, the service (start, decide, control, audit) and read models."""
