"""Host integration: options parsing, systemd, the reconcile timer, the policy service host."""
