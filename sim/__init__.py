"""Verification: the golden integer model, stream drivers and the simulator runners."""
