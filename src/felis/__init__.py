"""felis: Calico-compatible untracked host-endpoint firewall for high-connection workloads."""

__version__ = "0.1.0"
