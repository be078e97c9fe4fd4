"""The lab: two network namespaces, a real memcached and a real load generator.

It reproduces conntrack exhaustion on one machine and shows that felis' doNotTrack policy
cures it. Only this package (and `felis.dataplane.kernel`) touches the system.
"""
