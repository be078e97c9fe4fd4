// felis' XDP program: drop packets whose source address is in a blocklist, in the driver,
// before the kernel allocates anything for them (docs/xdp.md).
//
// Failsafe inbound ports pass first, whatever the source: a blocklist must never lock the
// operator out. Each blocklist entry has an id (the LPM value); per-CPU counters are kept per
// id. The maps are updated in place by felis; the program itself never changes for that.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_ENTRIES 262144
#define MAX_FAILSAFE 1024

struct lpm_v4 {
    __u32 prefixlen;
    __u32 addr;
};

struct lpm_v6 {
    __u32 prefixlen;
    __u8 addr[16];
};

struct failsafe_key {
    __u8 protocol;
    __u8 pad;
    __u16 port; // host byte order
};

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, MAX_ENTRIES);
    __type(key, struct lpm_v4);
    __type(value, __u32);
} felis_bl4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, MAX_ENTRIES);
    __type(key, struct lpm_v6);
    __type(value, __u32);
} felis_bl6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_FAILSAFE);
    __type(key, struct failsafe_key);
    __type(value, __u8);
} felis_fs SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MAX_ENTRIES);
    __type(key, __u32);
    __type(value, __u64);
} felis_cnt SEC(".maps");

static __always_inline int failsafe(__u8 protocol, void *l4, void *end)
{
    struct failsafe_key key = {.protocol = protocol};
    if (protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = l4;
        if ((void *)(tcp + 1) > end)
            return 0;
        key.port = bpf_ntohs(tcp->dest);
    } else if (protocol == IPPROTO_UDP) {
        struct udphdr *udp = l4;
        if ((void *)(udp + 1) > end)
            return 0;
        key.port = bpf_ntohs(udp->dest);
    } else if (protocol == IPPROTO_SCTP) {
        // SCTP's common header starts with the source and destination ports, as UDP's does.
        struct udphdr *sctp = l4;
        if ((void *)(sctp + 1) > end)
            return 0;
        key.port = bpf_ntohs(sctp->dest);
    } else {
        return 0;
    }
    return bpf_map_lookup_elem(&felis_fs, &key) != NULL;
}

static __always_inline int drop(__u32 *id)
{
    __u64 *packets = bpf_map_lookup_elem(&felis_cnt, id);
    if (packets)
        *packets += 1;
    return XDP_DROP;
}

SEC("xdp")
int felis_blocklist(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return XDP_PASS;

    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->ihl < 5)
            return XDP_PASS;
        if (failsafe(ip->protocol, (void *)ip + ip->ihl * 4, end))
            return XDP_PASS;
        struct lpm_v4 key = {.prefixlen = 32, .addr = ip->saddr};
        __u32 *id = bpf_map_lookup_elem(&felis_bl4, &key);
        return id ? drop(id) : XDP_PASS;
    }
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end)
            return XDP_PASS;
        // Only a transport header right after the fixed header is looked at for failsafe
        // ports; with extension headers in between the packet is judged by its source alone.
        if (failsafe(ip6->nexthdr, (void *)(ip6 + 1), end))
            return XDP_PASS;
        struct lpm_v6 key = {.prefixlen = 128};
        __builtin_memcpy(key.addr, &ip6->saddr, sizeof(key.addr));
        __u32 *id = bpf_map_lookup_elem(&felis_bl6, &key);
        return id ? drop(id) : XDP_PASS;
    }
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
