"""autoharness orchestrator: the loop, the gate, the records."""
