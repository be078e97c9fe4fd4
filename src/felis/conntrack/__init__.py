"""Conntrack pressure for operators: usage, top consumers, and a doNotTrack advisor.

`parse` and `analysis` are pure (unit-tested on captured text); `kernel` reads the system;
`policy` writes the proposed YAML and has felis' own model validate it.
"""
