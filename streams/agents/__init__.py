"""The stream worker's agents: replay-safe partition state (pure) and its Faust wiring."""
