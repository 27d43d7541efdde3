"""Traffic for the workshop: the Locust user, the traffic simulator and the contention table."""
