"""HTTP views, one blueprint per area."""
