"""Market discovery by league (issue 14): filled in by the discovery work."""
