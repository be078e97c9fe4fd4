"""Calico's validation rules (reference §2), one valid and one invalid example at least each.

Every invalid case names the field path the error must point at and a fragment of the
reason, so a rule that fires on the wrong field, or not at all, fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest
from model_docs import V3, egress, gnp, gns, hep, ingress, profile, tier

from felis.model import ManifestError, from_dict

OK = None
Case = tuple[str, dict[str, Any], tuple[str, str] | None]

# --------------------------------------------------------------------------- §2.2 metadata

_LONG_LABEL = "a" * 63

METADATA_CASES: list[Case] = [
    ("M1 name ok", hep(name="my-hep.eth0"), OK),
    ("M1 253 chars ok", hep(name=("a" * 62 + ".") * 4 + "a"), OK),
    ("M1 254 chars", hep(name=("a" * 62 + ".") * 4 + "ab"), ("metadata.name", "too long by 1")),
    ("M1 upper case", hep(name="MyHep"), ("metadata.name", "lower case alphanumeric")),
    ("M1 leading dash", gns(name="-set"), ("metadata.name", "lower case alphanumeric")),
    ("M1 empty name", gns(name=""), ("metadata.name", "must be specified")),
    ("M1 underscore", gns(name="a_b"), ("metadata.name", "lower case alphanumeric")),
    ("M2 thing", gnp(name="thing"), OK),
    ("M2 one dot", gnp(name="default.netpol"), OK),
    ("M2 tHiNg", gnp(name="tHiNg"), ("metadata.name", "lower case alphanumeric")),
    ("M2 t.h.i.ng", gnp(name="t.h.i.ng"), ("metadata.name", "at most one")),
    ("M2 t~!s.h.i.ng", gnp(name="t~!s.h.i.ng"), ("metadata.name", "lower case")),
    ("M2 knp.default.thing", gnp(name="knp.default.thing"), ("metadata.name", "lower case")),
    ("M2 254 chars", gnp(name="a" * 254), ("metadata.name", "too long by 1")),
    ("M3 tier ok", tier(name="security"), OK),
    ("M3 tier dot", tier(name="sec.ops"), ("metadata.name", "lower case alphanumeric")),
    ("M3 tier 64", tier(name="a" * 64), ("metadata.name", "too long by 1")),
    ("M3 tier 63", tier(name="a" * 63), OK),
    ("M4 label ok", gns(labels={"app": "web", "example.com/Name": "v_1.x"}), OK),
    ("M4 value 63", gns(labels={"a": _LONG_LABEL}), OK),
    ("M4 value empty", gns(labels={"a": ""}), OK),
    ("M4 value 64", gns(labels={"a": _LONG_LABEL + "a"}), ("metadata.labels.a", "63")),
    ("M4 key dot first", gns(labels={".a": "x"}), ('metadata.labels[".a"]', "name part")),
    ("M4 key bang", gns(labels={"a!": "x"}), ('metadata.labels["a!"]', "name part")),
    ("M4 key dollar", gns(labels={"a$b": "x"}), ('metadata.labels["a$b"]', "name part")),
    (
        "M4 upper prefix",
        gns(labels={"Example.com/x": "v"}),
        ('metadata.labels["Example.com/x"]', "prefix part"),
    ),
    ("M4 empty prefix", gns(labels={"/x": "v"}), ('metadata.labels["/x"]', "prefix part")),
    ("M4 two slashes", gns(labels={"a/b/c": "v"}), ('metadata.labels["a/b/c"]', "qualified")),
    ("M4 value bad char", hep(labels={"a": "x y"}), ("metadata.labels.a", "label value")),
    ("M4 non-string value", gns(labels={"a": ["x"]}), ("metadata.labels.a", "expected a string")),
    ("M4 number value", gns(labels={"a": 1}), OK),
    ("M5 annotation ok", gns(annotations={"Example.COM/Anything": "free text\nok"}), OK),
    ("M5 annotation key", gns(annotations={"a b": "x"}), ('metadata.annotations["a b"]', "name")),
    ("M5 size exactly 256KiB", gns(annotations={"k": "v" * (256 * 1024 - 1)}), OK),
    (
        "M5 size over",
        gns(annotations={"k": "v" * (256 * 1024)}),
        ("metadata.annotations", "too large by 1 bytes"),
    ),
    (
        "M6 gns label",
        gns(labels={"projectcalico.org/namespace": "x"}),
        ('metadata.labels["projectcalico.org/namespace"]', "not a valid label name"),
    ),
    ("M6 hep label ok", hep(labels={"projectcalico.org/namespace": "x"}), OK),
    (
        "namespace forbidden",
        hep(namespace="prod"),
        ("metadata.namespace", "HostEndpoint is not a namespaced resource"),
    ),
    ("namespace empty ok", hep(namespace=""), OK),
    ("creationTimestamp ok", hep(creationTimestamp="2026-08-22T10:00:00Z"), OK),
    (
        "creationTimestamp bad",
        hep(creationTimestamp="yesterday"),
        ("metadata.creationTimestamp", "RFC3339"),
    ),
    ("unknown metadata field", hep(colour="red"), ("metadata.colour", "not recognized")),
]

# --------------------------------------------------------------------------- §2.3 GNP spec

GNP_CASES: list[Case] = [
    (
        "G1 both",
        gnp({"doNotTrack": True, "preDNAT": True, "applyOnForward": True}),
        ("spec.preDNAT", "cannot both be true"),
    ),
    ("G1/G4 dnt+aof", gnp({"doNotTrack": True, "applyOnForward": True}), OK),
    ("G4 predNAT+aof", gnp({"preDNAT": True, "applyOnForward": True}), OK),
    ("G4 aof alone", gnp({"applyOnForward": True}), OK),
    ("G4 none", gnp({}), OK),
    ("G4 preDNAT alone", gnp({"preDNAT": True}), ("spec.applyOnForward", "must be true")),
    ("G4 doNotTrack alone", gnp({"doNotTrack": True}), ("spec.applyOnForward", "must be true")),
    (
        "G2 preDNAT egress",
        gnp({"preDNAT": True, "applyOnForward": True, "egress": [{"action": "Allow"}]}),
        ("spec.egress", "cannot have any egress rules"),
    ),
    (
        "G2 preDNAT ingress ok",
        gnp({"preDNAT": True, "applyOnForward": True, "ingress": [{"action": "Allow"}]}),
        OK,
    ),
    (
        "G3 preDNAT types Ingress ok",
        gnp({"preDNAT": True, "applyOnForward": True, "types": ["Ingress"]}),
        OK,
    ),
    (
        "G3 preDNAT types Egress",
        gnp({"preDNAT": True, "applyOnForward": True, "types": ["Egress"]}),
        ("spec.types", "cannot have 'Egress' type"),
    ),
    (
        "G3 preDNAT types both",
        gnp({"preDNAT": True, "applyOnForward": True, "types": ["Ingress", "Egress"]}),
        ("spec.types", "cannot have 'Egress' type"),
    ),
    ("G5 selector ok", gnp({"selector": "role == 'db' && has(x)"}), OK),
    ("G5 selector bad", gnp({"selector": "role == "}), ("spec.selector", "invalid selector")),
    ("G5 selector global", gnp({"selector": "global()"}), ("spec.selector", "global() can only")),
    (
        "G5 nsSelector global",
        gnp({"namespaceSelector": "global()"}),
        ("spec.namespaceSelector", "global()"),
    ),
    ("G5 saSelector ok", gnp({"serviceAccountSelector": "role == 'x'"}), OK),
    (
        "G5 saSelector bad",
        gnp({"serviceAccountSelector": "a &"}),
        ("spec.serviceAccountSelector", "invalid selector"),
    ),
    ("G5 selector 1024", gnp({"selector": "a == '" + "x" * 1017 + "'"}), OK),
    (
        "G5 selector 1025",
        gnp({"selector": "a == '" + "x" * 1018 + "'"}),
        ("spec.selector", "at most 1024"),
    ),
    (
        "G6 types dup",
        gnp({"types": ["Egress", "Egress"]}),
        ("spec.types", "'Egress' type specified more than once"),
    ),
    ("G6 types foo", gnp({"types": ["foo"]}), ("spec.types[0]", "supported values")),
    ("G6 types empty", gnp({"types": []}), OK),
    ("G6 types both", gnp({"types": ["Ingress", "Egress"]}), OK),
    (
        "G6 types three",
        gnp({"types": ["Ingress", "Egress", "Ingress"]}),
        ("spec.types", "at most 2"),
    ),
    ("G7 1024 rules", gnp({"ingress": [{"action": "Allow"}] * 1024}), OK),
    (
        "G7 1025 rules",
        gnp({"ingress": [{"action": "Allow"}] * 1025}),
        ("spec.ingress", "at most 1024"),
    ),
    (
        "G8 egress source services",
        egress(source={"services": {"name": "s", "namespace": "n"}}),
        ("spec.egress[0].source.services", "not allowed in egress rule source"),
    ),
    (
        "G8 ingress destination services",
        ingress(destination={"services": {"name": "s", "namespace": "n"}}),
        ("spec.ingress[0].destination.services", "not allowed in ingress rule destination"),
    ),
    (
        "G8 egress destination services ok",
        egress(destination={"services": {"name": "s", "namespace": "n"}}),
        OK,
    ),
    (
        "G8 ingress source services ok",
        ingress(source={"services": {"name": "s", "namespace": "n"}}),
        OK,
    ),
    (
        "G9 no namespace",
        egress(destination={"services": {"name": "s"}}),
        ("spec.egress[0].destination.services.namespace", "must specify a namespace"),
    ),
    (
        "G9 ingress no namespace",
        ingress(source={"services": {"name": "s"}}),
        ("spec.ingress[0].source.services.namespace", "must specify a namespace"),
    ),
    (
        "G10 egress http",
        egress(http={"methods": ["GET"]}),
        ("spec.egress[0].http", "not allowed in egress rules"),
    ),
    ("G10 ingress http ok", ingress(http={"methods": ["GET"]}), OK),
    ("G11 hint ok", gnp({"performanceHints": ["AssumeNeededOnEveryNode"]}), OK),
    (
        "G11 hint junk",
        gnp({"performanceHints": ["Junk"]}),
        ("spec.performanceHints[0]", "supported values"),
    ),
    (
        "G11 hint dup",
        gnp({"performanceHints": ["AssumeNeededOnEveryNode", "AssumeNeededOnEveryNode"]}),
        ("spec.performanceHints", "duplicate"),
    ),
    ("G12 tier ok", gnp({"tier": "security"}), OK),
    ("G12 tier bad", gnp({"tier": "Security!"}), ("spec.tier", "invalid tier name")),
    ("order float", gnp({"order": 10.5}), OK),
    ("order int", gnp({"order": 100}), OK),
    ("order string", gnp({"order": "100"}), ("spec.order", "expected a number")),
    ("order nan", gnp({"order": float("nan")}), ("spec.order", "finite")),
    ("bool strict", gnp({"doNotTrack": "true"}), ("spec.doNotTrack", "expected a boolean")),
    ("unknown spec field", gnp({"doNotTrak": True}), ("spec.doNotTrak", "not recognized")),
    ("snake_case rejected", gnp({"do_not_track": True}), ("spec.do_not_track", "not recognized")),
]

# --------------------------------------------------------------------------- §2.4 Rule

RULE_CASES: list[Case] = [
    ("R1 Allow", ingress(action="Allow"), OK),
    ("R1 Deny", ingress(action="Deny"), OK),
    ("R1 Log", ingress(action="Log"), OK),
    ("R1 Pass", ingress(action="Pass"), OK),
    ("R1 allow lower", ingress(action="allow"), ("spec.ingress[0].action", "supported values")),
    ("R1 allowfoo", ingress(action="allowfoo"), ("spec.ingress[0].action", "supported values")),
    ("R1 missing", gnp({"ingress": [{"protocol": "TCP"}]}), ("spec.ingress[0].action", "required")),
    ("R2 TCP", ingress(protocol="TCP"), OK),
    ("R2 SCTP", ingress(protocol="SCTP"), OK),
    ("R2 UDPLite", ingress(protocol="UDPLite"), OK),
    ("R2 number", ingress(protocol=255), OK),
    ("R2 numeric string", ingress(protocol="6"), OK),
    ("R2 zero", ingress(protocol=0), ("spec.ingress[0].protocol", "protocol number invalid")),
    (
        "R2 zero string",
        ingress(protocol="0"),
        ("spec.ingress[0].protocol", "protocol number invalid"),
    ),
    (
        "R2 256 string",
        ingress(protocol="256"),
        ("spec.ingress[0].protocol", "protocol name invalid"),
    ),
    ("R2 256 number", ingress(protocol=256), ("spec.ingress[0].protocol", "out of range")),
    (
        "R2 tcp lower",
        ingress(protocol="tcp"),
        ("spec.ingress[0].protocol", "protocol name invalid"),
    ),
    (
        "R2 tcpfoo",
        ingress(protocol="tcpfoo"),
        ("spec.ingress[0].protocol", "protocol name invalid"),
    ),
    (
        "R2 footcp",
        ingress(notProtocol="footcp"),
        ("spec.ingress[0].notProtocol", "protocol name invalid"),
    ),
    ("R2 notProtocol ok", ingress(notProtocol="UDP"), OK),
    ("R2 bool", ingress(protocol=True), ("spec.ingress[0].protocol", "integer or a string")),
    ("R3 numeric port tcp", ingress(protocol=6, source={"ports": [1]}), OK),
    ("R3 named port tcp", ingress(protocol=6, source={"ports": ["foo"]}), OK),
    ("R3 named port TCP", ingress(protocol="TCP", source={"ports": ["foo"]}), OK),
    ("R3 named port UDP", ingress(protocol="UDP", source={"ports": ["foo"]}), OK),
    ("R3 empty list proto 7", ingress(protocol=7, source={"ports": []}), OK),
    ("R3 notPorts udp", ingress(protocol=17, source={"notPorts": [1]}), OK),
    ("R3 empty notPorts 100", ingress(protocol=100, source={"notPorts": []}), OK),
    (
        "R3 numeric no protocol",
        ingress(destination={"ports": [1]}),
        ("spec.ingress[0].destination.ports", "numeric port or port range must set protocol"),
    ),
    (
        "R3 range no protocol",
        ingress(source={"notPorts": ["1:2"]}),
        ("spec.ingress[0].source.notPorts", "numeric port or port range"),
    ),
    ("R3 named no protocol", ingress(destination={"ports": ["foo"]}), OK),
    ("R3 named notPorts no protocol", ingress(source={"notPorts": ["foo"]}), OK),
    (
        "R4 proto 7 ports",
        ingress(protocol=7, source={"ports": [1]}),
        ("spec.ingress[0].source.ports", "must set protocol to TCP or UDP or SCTP"),
    ),
    (
        "R4 proto 100 notPorts",
        ingress(protocol=100, source={"notPorts": [1]}),
        ("spec.ingress[0].source.notPorts", "must set protocol"),
    ),
    (
        "R4 unknown named",
        ingress(protocol="unknown", destination={"notPorts": ["foo"]}),
        ("spec.ingress[0].destination.notPorts", "must set protocol"),
    ),
    (
        "R4 ICMP notPorts",
        ingress(ipVersion=4, protocol="ICMP", destination={"notPorts": [1]}),
        ("spec.ingress[0].destination.notPorts", "must set protocol"),
    ),
    ("R4 SCTP empty", ingress(protocol="SCTP", destination={"ports": []}), OK),
    ("R4 SCTP port", ingress(protocol="SCTP", destination={"ports": [1]}), OK),
    ("R4 ICMPv6 empty", ingress(ipVersion=6, protocol="ICMPv6", destination={"notPorts": []}), OK),
    ("R5 ICMP", ingress(protocol="ICMP", icmp={"type": 0}), OK),
    ("R5 ICMPv6", ingress(protocol="ICMPv6", icmp={"type": 0}), OK),
    ("R5 numeric 58", ingress(protocol=58, icmp={"type": 128}), OK),
    (
        "R5 no protocol",
        ingress(ipVersion=4, icmp={"type": 0}),
        ("spec.ingress[0].icmp", "require protocol to be ICMP or ICMPv6"),
    ),
    (
        "R5 tcp",
        ingress(protocol="TCP", icmp={"type": 0}),
        ("spec.ingress[0].icmp", "ICMP or ICMPv6"),
    ),
    ("R5 notICMP not checked", ingress(notICMP={"type": 3}), OK),
    ("R6 type 254", ingress(protocol="ICMP", icmp={"type": 254}), OK),
    (
        "R6 type 255",
        ingress(protocol="ICMP", icmp={"type": 255}),
        ("spec.ingress[0].icmp.type", "at most 254"),
    ),
    ("R6 code 255", ingress(protocol="ICMPv6", icmp={"type": 128, "code": 255}), OK),
    ("R6 code 0", ingress(protocol="ICMPv6", icmp={"type": 128, "code": 0}), OK),
    (
        "R6 code 256",
        ingress(protocol="ICMP", icmp={"type": 128, "code": 256}),
        ("spec.ingress[0].icmp.code", "at most 255"),
    ),
    (
        "R6 code no type",
        ingress(protocol="ICMP", icmp={"code": 0}),
        ("spec.ingress[0].icmp.code", "without an ICMP type"),
    ),
    (
        "R6 notICMP code no type",
        ingress(notICMP={"code": 1}),
        ("spec.ingress[0].notICMP.code", "without an ICMP type"),
    ),
    (
        "R6 negative type",
        ingress(protocol="ICMP", icmp={"type": -1}),
        ("spec.ingress[0].icmp.type", "at least 0"),
    ),
    (
        "R6 type string",
        ingress(protocol="ICMP", icmp={"type": "0"}),
        ("spec.ingress[0].icmp.type", "expected an integer"),
    ),
    ("R7 ICMP v4", ingress(protocol="ICMP", ipVersion=4), OK),
    (
        "R7 ICMP v6",
        ingress(protocol="ICMP", ipVersion=6),
        ("spec.ingress[0].protocol", "protocol ICMP requires ipVersion 4"),
    ),
    (
        "R7 1 v6",
        ingress(protocol=1, ipVersion=6),
        ("spec.ingress[0].protocol", "requires ipVersion 4"),
    ),
    (
        "R7 notProtocol",
        ingress(notProtocol="ICMP", ipVersion=6),
        ("spec.ingress[0].notProtocol", "requires ipVersion 4"),
    ),
    ("R8 ICMPv6 v6", ingress(protocol="ICMPv6", ipVersion=6), OK),
    (
        "R8 ICMPv6 v4",
        ingress(protocol="ICMPv6", ipVersion=4),
        ("spec.ingress[0].protocol", "protocol ICMPv6 requires ipVersion 6"),
    ),
    (
        "R8 58 v4",
        ingress(notProtocol=58, ipVersion=4),
        ("spec.ingress[0].notProtocol", "requires ipVersion 6"),
    ),
    ("R9 v4", ingress(ipVersion=4), OK),
    ("R9 v6", ingress(ipVersion=6), OK),
    ("R9 zero", ingress(ipVersion=0), ("spec.ingress[0].ipVersion", "supported values")),
    ("R9 string", ingress(ipVersion="4"), ("spec.ingress[0].ipVersion", "supported values")),
    (
        "R10 v4 nets",
        ingress(source={"nets": ["10.0.0.0/8"]}, destination={"notNets": ["10.1.0.0/16"]}),
        OK,
    ),
    ("R10 v6 nets", ingress(ipVersion=6, source={"nets": ["aabb:aabb::/122"]}), OK),
    (
        "R10 mixed",
        ingress(source={"nets": ["1.2.3.0/26"]}, destination={"nets": ["aabb:aabb::/122"]}),
        ("spec.ingress[0].destination.nets", "both IPv4 and IPv6"),
    ),
    (
        "R10 mixed one list",
        ingress(source={"nets": ["1.2.3.0/26", "aabb::/64"]}),
        ("spec.ingress[0].source.nets", "both IPv4 and IPv6"),
    ),
    (
        "R10 v6 rule v4 net",
        ingress(ipVersion=6, source={"notNets": ["10.0.0.0/8"]}),
        ("spec.ingress[0].source.notNets", "IP version doesn't match"),
    ),
    (
        "R10 v4 rule v6 net",
        ingress(ipVersion=4, destination={"nets": ["aabb:aabb::ffff/128"]}),
        ("spec.ingress[0].destination.nets", "IP version doesn't match"),
    ),
    (
        "R10 garbage",
        ingress(source={"nets": ["garbage"]}),
        ("spec.ingress[0].source.nets[0]", "invalid CIDR"),
    ),
    (
        "R10 bare IP",
        ingress(source={"nets": ["10.0.0.1"]}),
        ("spec.ingress[0].source.nets[0]", "invalid CIDR"),
    ),
    (
        "R10 netmask form",
        ingress(source={"nets": ["10.0.0.0/255.0.0.0"]}),
        ("spec.ingress[0].source.nets[0]", "invalid CIDR"),
    ),
    (
        "R10 prefix too long",
        ingress(source={"nets": ["10.0.0.0/33"]}),
        ("spec.ingress[0].source.nets[0]", "invalid CIDR"),
    ),
    (
        "R10 scope id",
        ingress(source={"nets": ["fe80::%eth0/64"]}),
        ("spec.ingress[0].source.nets[0]", "invalid CIDR"),
    ),
    ("R10 /32 host", ingress(source={"nets": ["10.0.0.1/32"]}), OK),
    (
        "R11 notNets 0/0",
        ingress(destination={"notNets": ["0.0.0.0/0"]}),
        ("spec.ingress[0].destination.notNets[0]", "catch-all CIDR in negation"),
    ),
    (
        "R11 notNets ::0/0",
        ingress(source={"notNets": ["::0/0"]}),
        ("spec.ingress[0].source.notNets[0]", "catch-all"),
    ),
    (
        "R11 notNets 0:0:0::/0",
        ingress(source={"notNets": ["0:0:0::/0"]}),
        ("spec.ingress[0].source.notNets[0]", "catch-all"),
    ),
    ("R11 nets 0/0 ok", ingress(source={"nets": ["0.0.0.0/0"]}), OK),
    (
        "R12 http allow",
        ingress(http={"methods": ["GET"], "paths": [{"exact": "/a"}, {"prefix": "/b"}]}),
        OK,
    ),
    (
        "R12 http deny",
        ingress(action="Deny", http={"methods": ["GET"]}),
        ("spec.ingress[0].http", "only valid on Allow rules"),
    ),
    (
        "R12 http udp",
        ingress(protocol="UDP", http={"methods": ["GET"]}),
        ("spec.ingress[0].http", "protocol TCP or unset"),
    ),
    ("R12 http tcp", ingress(protocol="TCP", http={"methods": ["GET"]}), OK),
    ("R12 http 6", ingress(protocol=6, http={"methods": ["GET"]}), OK),
    (
        "R12 dup methods",
        ingress(http={"methods": ["GET", "GET"]}),
        ("spec.ingress[0].http.methods", "duplicates"),
    ),
    (
        "R12 both exact prefix",
        ingress(http={"paths": [{"exact": "/a", "prefix": "/b"}]}),
        ("spec.ingress[0].http.paths[0]", "Both 'exact' and 'prefix'"),
    ),
    (
        "R12 neither",
        ingress(http={"paths": [{}]}),
        ("spec.ingress[0].http.paths[0]", "Either 'exact' or 'prefix'"),
    ),
    (
        "R12 no slash",
        ingress(http={"paths": [{"exact": "a"}]}),
        ("spec.ingress[0].http.paths[0]", "must start with"),
    ),
    (
        "R12 query",
        ingress(http={"paths": [{"prefix": "/a?b"}]}),
        ("spec.ingress[0].http.paths[0]", "must start with"),
    ),
    (
        "R12 21 methods",
        ingress(http={"methods": [f"M{i}" for i in range(21)]}),
        ("spec.ingress[0].http.methods", "at most 20"),
    ),
    ("R13 annotations ok", ingress(metadata={"annotations": {"note": "x"}}), OK),
    (
        "R13 annotation key",
        ingress(metadata={"annotations": {"bad key": "x"}}),
        ('spec.ingress[0].metadata.annotations["bad key"]', "annotation key"),
    ),
    ("unknown rule field", ingress(colour="red"), ("spec.ingress[0].colour", "not recognized")),
]

# --------------------------------------------------------------------------- §2.5 EntityRule

ENTITY_CASES: list[Case] = [
    ("E1 masked", ingress(source={"nets": ["10.0.0.0/8"]}), OK),
    (
        "E1 unmasked",
        ingress(source={"nets": ["10.0.0.1/8"]}),
        ("spec.ingress[0].source.nets[0]", "host bits"),
    ),
    (
        "E1 unmasked v6",
        ingress(destination={"notNets": ["2001:db8::1/64"]}),
        ("spec.ingress[0].destination.notNets[0]", "host bits"),
    ),
    ("E2 selector ok", ingress(source={"selector": "has(calico/k8s_NS-.1/role)"}), OK),
    (
        "E2 selector bad",
        ingress(source={"selector": "thing=hello &"}),
        ("spec.ingress[0].source.selector", "invalid selector"),
    ),
    (
        "E2 notSelector bad",
        ingress(destination={"notSelector": "a =="}),
        ("spec.ingress[0].destination.notSelector", "invalid selector"),
    ),
    (
        "E2 sa selector bad",
        ingress(source={"serviceAccounts": {"selector": "("}}),
        ("spec.ingress[0].source.serviceAccounts.selector", "invalid selector"),
    ),
    ("E2 sa ok", ingress(source={"serviceAccounts": {"names": ["a"], "selector": "x == 'y'"}}), OK),
    (
        "E3 global",
        ingress(source={"selector": "global()"}),
        ("spec.ingress[0].source.selector", "global() can only"),
    ),
    (
        "E3 spaced global",
        ingress(source={"selector": "  global()  "}),
        ("spec.ingress[0].source.selector", "global() can only"),
    ),
    ("E4 ns global", ingress(source={"namespaceSelector": "global()"}), OK),
    ("E4 ns spaced global", ingress(source={"namespaceSelector": "  global()  "}), OK),
    (
        "E4 ns global and",
        ingress(source={"namespaceSelector": " global() && all()"}),
        ("spec.ingress[0].source.namespaceSelector", "cannot be combined"),
    ),
    (
        "E4 ns global or",
        ingress(source={"namespaceSelector": "global()||all()"}),
        ("spec.ingress[0].source.namespaceSelector", "cannot be combined"),
    ),
    ("E4 ns plain ok", ingress(source={"namespaceSelector": "team == 'a'"}), OK),
    (
        "E5 services + nsSelector",
        ingress(
            source={"services": {"name": "s", "namespace": "n"}, "namespaceSelector": "a == 'b'"}
        ),
        ("spec.ingress[0].source.services", "NamespaceSelector and Services"),
    ),
    (
        "E5 services + selector",
        ingress(source={"services": {"name": "s", "namespace": "n"}, "selector": "a == 'b'"}),
        ("spec.ingress[0].source.services", "Selector/NotSelector and Services"),
    ),
    (
        "E5 services + notNets",
        ingress(source={"services": {"name": "s", "namespace": "n"}, "notNets": ["10.0.0.0/8"]}),
        ("spec.ingress[0].source.services", "Nets/NotNets and Services"),
    ),
    (
        "E5 services + sa",
        ingress(
            source={
                "services": {"name": "s", "namespace": "n"},
                "serviceAccounts": {"names": ["x"]},
            }
        ),
        ("spec.ingress[0].source.services", "ServiceAccounts and Services"),
    ),
    (
        "E5 services no name",
        ingress(source={"services": {"namespace": "n"}}),
        ("spec.ingress[0].source.services.name", "must specify a service name"),
    ),
    (
        "E5 dest services + ports",
        egress(
            protocol="TCP", destination={"services": {"name": "s", "namespace": "n"}, "ports": [80]}
        ),
        ("spec.egress[0].destination", "ports and notPorts cannot be specified with services"),
    ),
    (
        "E5 source services + ports ok",
        ingress(
            protocol="TCP", source={"services": {"name": "s", "namespace": "n"}, "ports": [80]}
        ),
        OK,
    ),
    ("E6 50 ports", ingress(protocol="TCP", destination={"ports": list(range(1, 51))}), OK),
    (
        "E6 51 ports",
        ingress(protocol="TCP", destination={"ports": list(range(1, 52))}),
        ("spec.ingress[0].destination.ports", "at most 50"),
    ),
    ("E6 256 nets", ingress(source={"nets": [f"10.0.{i}.0/24" for i in range(256)]}), OK),
    (
        "E6 257 nets",
        ingress(source={"nets": [f"10.{i // 256}.{i % 256}.0/24" for i in range(257)]}),
        ("spec.ingress[0].source.nets", "at most 256"),
    ),
    (
        "E6 selector too long",
        ingress(source={"notSelector": "a == '" + "x" * 1020 + "'"}),
        ("spec.ingress[0].source.notSelector", "at most 1024"),
    ),
    (
        "unknown entity field",
        ingress(source={"net": ["10.0.0.0/8"]}),
        ("spec.ingress[0].source.net", "not recognized"),
    ),
]

# --------------------------------------------------------------------------- §2.6 ports

PORT_CASES: list[Case] = [
    ("P single", ingress(protocol="TCP", destination={"ports": [80]}), OK),
    ("P string single", ingress(protocol="TCP", destination={"ports": ["80"]}), OK),
    ("P range", ingress(protocol="TCP", destination={"ports": ["100:200"]}), OK),
    ("P named", ingress(protocol="TCP", destination={"ports": ["http-alt"]}), OK),
    (
        "P zero",
        ingress(protocol="TCP", destination={"notPorts": [0]}),
        ("spec.ingress[0].destination.notPorts[0]", "between 1 and 65535"),
    ),
    (
        "P zero range",
        ingress(protocol="TCP", destination={"notPorts": ["0:100"]}),
        ("spec.ingress[0].destination.notPorts[0]", "between 1 and 65535"),
    ),
    (
        "P min > max ports",
        ingress(protocol="TCP", destination={"ports": ["200:100"]}),
        ("spec.ingress[0].destination.ports[0]", "minimum port number (200) is greater"),
    ),
    (
        "P min > max notPorts",
        ingress(protocol="TCP", source={"notPorts": [80, "200:100"]}),
        ("spec.ingress[0].source.notPorts[1]", "greater than maximum"),
    ),
    (
        "P too big",
        ingress(protocol="TCP", destination={"ports": [65536]}),
        ("spec.ingress[0].destination.ports[0]", "out of range"),
    ),
    (
        "P too big string",
        ingress(protocol="TCP", destination={"ports": ["65536"]}),
        ("spec.ingress[0].destination.ports[0]", "invalid port format"),
    ),
    ("P max ok", ingress(protocol="TCP", destination={"ports": [65535, "1:65535"]}), OK),
    (
        "P bad name",
        ingress(protocol="TCP", destination={"ports": ["no spaces"]}),
        ("spec.ingress[0].destination.ports[0]", "invalid name for named port"),
    ),
    (
        "P float",
        ingress(protocol="TCP", destination={"ports": [80.0]}),
        ("spec.ingress[0].destination.ports[0]", "integer or a string"),
    ),
    (
        "P negative",
        ingress(protocol="TCP", destination={"ports": [-1]}),
        ("spec.ingress[0].destination.ports[0]", "out of range"),
    ),
]

# --------------------------------------------------------------------------- §2.7 HostEndpoint

HEP_CASES: list[Case] = [
    ("H iface+node", hep({"interfaceName": "eth0", "node": "node01"}), OK),
    ("H ips+node", hep({"expectedIPs": ["10.0.0.1", "dead:beef::1"], "node": "node01"}), OK),
    ("H both", hep({"interfaceName": "eth0", "expectedIPs": ["10.0.0.1"], "node": "node01"}), OK),
    ("H star", hep({"interfaceName": "*", "node": "node01"}), OK),
    ("H1 no node", hep({"interfaceName": "eth0"}), ("spec.node", "node must be specified")),
    (
        "H1 bad node",
        hep({"interfaceName": "eth0", "node": "Node_1"}),
        ("spec.node", "invalid node name"),
    ),
    (
        "H2 neither",
        hep({"node": "node01"}),
        ("spec", "at least one of interfaceName or expectedIPs"),
    ),
    ("H3 valid iface", hep({"interfaceName": "Valid_Iface.0-9", "node": "n"}), OK),
    (
        "H3 too long",
        hep({"interfaceName": "interfaceTooLong", "node": "n"}),
        ("spec.interfaceName", "invalid interface name"),
    ),
    (
        "H3 ampersand",
        hep({"interfaceName": "Invalid&Intface", "node": "n"}),
        ("spec.interfaceName", "invalid interface name"),
    ),
    (
        "H3 hash",
        hep({"interfaceName": "Invalid#Intface", "node": "n"}),
        ("spec.interfaceName", "invalid interface name"),
    ),
    (
        "H3 colon",
        hep({"interfaceName": "Invalid:Intface", "node": "n"}),
        ("spec.interfaceName", "invalid interface name"),
    ),
    (
        "H4 cidr",
        hep({"expectedIPs": ["10.0.0.0/24"], "node": "n"}),
        ("spec.expectedIPs[0]", "invalid IP address"),
    ),
    (
        "H4 garbage",
        hep({"expectedIPs": ["10.0.0.1", "x"], "node": "n"}),
        ("spec.expectedIPs[1]", "invalid IP address"),
    ),
    (
        "H4 leading zero",
        hep({"expectedIPs": ["010.0.0.1"], "node": "n"}),
        ("spec.expectedIPs[0]", "invalid IP address"),
    ),
    (
        "H5 profile ok",
        hep({"interfaceName": "eth0", "node": "n", "profiles": ["knp.default.fun"]}),
        OK,
    ),
    (
        "H5 profile bad",
        hep({"interfaceName": "eth0", "node": "n", "profiles": [".fun"]}),
        ("spec.profiles[0]", "invalid profile name"),
    ),
    (
        "H6 ports ok",
        hep(
            {
                "interfaceName": "eth0",
                "node": "n",
                "ports": [
                    {"name": "web", "protocol": "TCP", "port": 80},
                    {"name": "web", "protocol": "UDP", "port": 80},
                ],
            }
        ),
        OK,
    ),
    (
        "H6 no name",
        hep({"interfaceName": "eth0", "node": "n", "ports": [{"protocol": "TCP", "port": 1234}]}),
        ("spec.ports[0].name", "required"),
    ),
    (
        "H6 empty name",
        hep(
            {
                "interfaceName": "eth0",
                "node": "n",
                "ports": [{"name": "", "protocol": "TCP", "port": 1234}],
            }
        ),
        ("spec.ports[0].name", "must be specified"),
    ),
    (
        "H6 bad IANA name",
        hep(
            {
                "interfaceName": "eth0",
                "node": "n",
                "ports": [{"name": "Web--1", "protocol": "TCP", "port": 1}],
            }
        ),
        ("spec.ports[0].name", "invalid port name"),
    ),
    (
        "H6 digits only name",
        hep(
            {
                "interfaceName": "eth0",
                "node": "n",
                "ports": [{"name": "123", "protocol": "TCP", "port": 1}],
            }
        ),
        ("spec.ports[0].name", "at least one letter"),
    ),
    (
        "H6 icmp port",
        hep(
            {
                "interfaceName": "eth0",
                "node": "n",
                "ports": [{"name": "p", "protocol": "ICMP", "port": 1}],
            }
        ),
        ("spec.ports[0].protocol", "does not support ports"),
    ),
    (
        "H6 numeric protocol",
        hep(
            {
                "interfaceName": "eth0",
                "node": "n",
                "ports": [{"name": "p", "protocol": 132, "port": 1}],
            }
        ),
        OK,
    ),
    (
        "H6 port zero",
        hep(
            {
                "interfaceName": "eth0",
                "node": "n",
                "ports": [{"name": "p", "protocol": "TCP", "port": 0}],
            }
        ),
        ("spec.ports[0].port", "at least 1"),
    ),
    (
        "H6 port too big",
        hep(
            {
                "interfaceName": "eth0",
                "node": "n",
                "ports": [{"name": "p", "protocol": "TCP", "port": 65536}],
            }
        ),
        ("spec.ports[0].port", "at most 65535"),
    ),
    ("H7 node 253", hep({"interfaceName": "eth0", "node": ("a" * 62 + ".") * 4 + "a"}), OK),
    (
        "H7 node 254",
        hep({"interfaceName": "eth0", "node": ("a" * 62 + ".") * 4 + "ab"}),
        ("spec.node", "at most 253"),
    ),
    (
        "H unknown field",
        hep({"interfaceName": "eth0", "node": "n", "iface": "x"}),
        ("spec.iface", "not recognized"),
    ),
]

# --------------------------------------------------------------------------- §2.8, §2.9

GNS_TIER_CASES: list[Case] = [
    ("GNS nets", gns(["10.0.0.1", "11.0.0.0/8", "dead:beef::", "dead:beef::/96"]), OK),
    ("GNS unmasked ok", gns(["10.0.0.1/24"]), OK),
    ("GNS garbage", gns(["garbage"]), ("spec.nets[0]", "invalid CIDR or IP address")),
    ("GNS second bad", gns(["10.0.0.0/8", "10.0.0.0/40"]), ("spec.nets[1]", "invalid CIDR")),
    ("GNS number", gns([10]), ("spec.nets[0]", "invalid CIDR or IP address '10'")),
    ("GNS object", gns([{}]), ("spec.nets[0]", "expected a string")),
    ("Tier pass", tier({"order": 100, "defaultAction": "Pass"}), OK),
    ("Tier deny default", tier({"order": 100}), OK),
    (
        "Tier bad action",
        tier({"defaultAction": "Allow"}),
        ("spec.defaultAction", "supported values"),
    ),
    ("Tier default ok", tier({"order": 1000000, "defaultAction": "Deny"}, name="default"), OK),
    ("Tier default defaulted action ok", tier({"order": 1000000}, name="default"), OK),
    (
        "Tier default order",
        tier({"order": 5}, name="default"),
        ("spec.order", "default tier order must be 1000000"),
    ),
    (
        "Tier default pass",
        tier({"order": 1000000, "defaultAction": "Pass"}, name="default"),
        ("spec.defaultAction", "'default' tier must have default action 'Deny'"),
    ),
    ("Tier kube-admin ok", tier({"order": 1000, "defaultAction": "Pass"}, name="kube-admin"), OK),
    (
        "Tier kube-admin deny",
        tier({"order": 1000}, name="kube-admin"),
        ("spec.defaultAction", "'kube-admin' tier must have default action 'Pass'"),
    ),
    (
        "Tier kube-baseline ok",
        tier({"order": 10000000, "defaultAction": "Pass"}, name="kube-baseline"),
        OK,
    ),
    (
        "Tier kube-baseline order",
        tier({"defaultAction": "Pass"}, name="kube-baseline"),
        ("spec.order", "kube-baseline tier order must be 10000000"),
    ),
]

PROFILE_CASES: list[Case] = [
    ("Profile empty", profile(), OK),
    ("Profile kns name", profile(name="kns.default"), OK),
    ("Profile bad name", profile(name=".web"), ("metadata.name", "")),
    (
        "Profile rules and labels",
        profile(
            {
                "labelsToApply": {"role": "web", "example.com/team": "blue"},
                "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}],
                "egress": [{"action": "Pass"}],
            }
        ),
        OK,
    ),
    (
        "Profile bad label key",
        profile({"labelsToApply": {"bad key": "x"}}),
        ('spec.labelsToApply["bad key"]', "invalid label key"),
    ),
    (
        "Profile bad label value",
        profile({"labelsToApply": {"role": "-web"}}),
        ("spec.labelsToApply.role", "invalid label value"),
    ),
    (
        "Profile bad rule net",
        profile({"egress": [{"action": "Allow", "destination": {"nets": ["10.0.0.0/33"]}}]}),
        ("spec.egress[0].destination.nets[0]", ""),
    ),
    (
        "Profile ports without protocol",
        profile({"ingress": [{"action": "Allow", "destination": {"ports": [80]}}]}),
        ("spec.ingress[0].destination.ports", ""),
    ),
    ("Profile unknown field", profile({"rules": []}), ("spec.rules", "not recognized")),
    (
        "Profile namespaced",
        profile(namespace="default"),
        ("metadata.namespace", "not a namespaced resource"),
    ),
]

ALL_CASES = (
    METADATA_CASES
    + GNP_CASES
    + RULE_CASES
    + ENTITY_CASES
    + PORT_CASES
    + HEP_CASES
    + GNS_TIER_CASES
    + PROFILE_CASES
)


def test_there_are_many_cases() -> None:
    assert len(ALL_CASES) >= 150
    assert len({case[0] for case in ALL_CASES}) == len(ALL_CASES), "case ids must be unique"


@pytest.mark.parametrize(
    ("doc", "expected"), [c[1:] for c in ALL_CASES], ids=[c[0] for c in ALL_CASES]
)
def test_rule(doc: dict[str, Any], expected: tuple[str, str] | None) -> None:
    if expected is None:
        resource = from_dict(doc, "case.yaml")
        assert resource.kind == doc["kind"]
        return
    with pytest.raises(ManifestError) as info:
        from_dict(doc, "case.yaml")
    found = [(error.path, error.reason) for error in info.value.errors]
    path, fragment = expected
    assert any(p == path and fragment in r for p, r in found), found
    for line in info.value.lines():
        assert "\n" not in line
        assert line.startswith("case.yaml: document 1 (")


def test_every_problem_is_reported() -> None:
    doc = ingress(
        action="allow",
        protocol="tcp",
        source={"nets": ["garbage"], "selector": "a =="},
    )
    doc["metadata"]["name"] = "Bad_Name"
    with pytest.raises(ManifestError) as info:
        from_dict(doc)
    # Structural errors (action enum) are reported; so is every problem in one pass.
    assert [e.path for e in info.value.errors] == ["spec.ingress[0].action"]

    doc = ingress(protocol="tcp", source={"nets": ["garbage"], "selector": "a =="})
    doc["metadata"]["name"] = "Bad_Name"
    with pytest.raises(ManifestError) as info:
        from_dict(doc)
    paths = {e.path for e in info.value.errors}
    assert paths >= {
        "metadata.name",
        "spec.ingress[0].protocol",
        "spec.ingress[0].source.nets[0]",
        "spec.ingress[0].source.selector",
    }


def test_direct_construction_raises_first_problem() -> None:
    from felis.model import GlobalNetworkPolicy, GlobalNetworkPolicySpec, ObjectMeta

    with pytest.raises(ValueError, match=r"spec\.applyOnForward"):
        GlobalNetworkPolicy(
            metadata=ObjectMeta(name="p"), spec=GlobalNetworkPolicySpec(do_not_track=True)
        )


def test_write_problems_m7() -> None:
    from felis.model import write_problems

    fresh = from_dict(hep())
    assert write_problems(fresh, "create") == []
    paths = {p for p, _ in write_problems(fresh, "update")}
    assert paths == {"metadata.resourceVersion", "metadata.uid", "metadata.creationTimestamp"}
    stored = from_dict(
        hep(resourceVersion="12", uid="u-1", creationTimestamp="2026-01-01T00:00:00Z")
    )
    assert write_problems(stored, "update") == []
    assert [p for p, _ in write_problems(stored, "create")] == ["metadata.resourceVersion"]


def test_api_version_and_kind_checks() -> None:
    doc = hep()
    doc["apiVersion"] = "projectcalico.org/v2"
    with pytest.raises(ManifestError, match=r"apiVersion 'projectcalico\.org/v2' is not supported"):
        from_dict(doc)
    doc = hep()
    del doc["apiVersion"]
    with pytest.raises(ManifestError, match="apiVersion is missing"):
        from_dict(doc)
    doc = hep()
    doc["kind"] = "WorkloadEndpoint"
    with pytest.raises(ManifestError, match="resource type 'WorkloadEndpoint' is not supported"):
        from_dict(doc)
    doc = hep()
    del doc["kind"]
    with pytest.raises(ManifestError, match="kind is missing"):
        from_dict(doc)
    with pytest.raises(ManifestError, match="must be an object"):
        from_dict([V3])  # type: ignore[arg-type]
