"""The embedded target: a small control plane that runs the chart's objects on this machine."""
