"""The workshop's Chaos Toolkit experiments (the YAML files here) and their runner."""
