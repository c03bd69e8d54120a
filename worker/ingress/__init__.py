"""The HTTP ingress (`cwi serve`): webhook calls from the ERPs, health, readiness and metrics."""
