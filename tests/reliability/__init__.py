"""Reliability and security suite: load, faults, bad input, secrets."""
