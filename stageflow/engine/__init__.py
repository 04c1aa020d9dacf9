"""The durable engine: events, the pure state machine, the scheduler that performs its actions."""
