"""XDP: blocklisted sources dropped in the driver, before the raw table (docs/xdp.md)."""
