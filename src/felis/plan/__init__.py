"""`felis plan`: what applying some documents would change on one node.

plan = make_plan(current_resources, overlay(current_resources, incoming), "node-1")
plan.changes_node      # would the kernel change?
render_text(plan)      # words, then the exact delta the agent would write
"""

from felis.plan.changes import Plan, make_plan
from felis.plan.delta import FamilyDelta, iptables_state, kernel_delta, nft_state
from felis.plan.report import render_text
from felis.plan.snapshot import Snapshot, overlay

__all__ = [
    "FamilyDelta",
    "Plan",
    "Snapshot",
    "iptables_state",
    "kernel_delta",
    "make_plan",
    "nft_state",
    "overlay",
    "render_text",
]
