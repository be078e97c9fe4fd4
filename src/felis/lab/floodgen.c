// The lab flooder's frame source in driver mode (docs/lab.md, "The flood phases").
//
// Not a firewall program: the flooder runs it with BPF_PROG_TEST_RUN in live-frames mode, once
// per frame of a template SYN, and it hands each frame to the lab veth's XDP transmit path.
// The frame then reaches the server's end of the pair the way a NIC delivers one: as a driver
// buffer, with no socket buffer built by anybody yet. So the server's XDP program (or, without
// one, the stack and the raw table) sees what it would see from a remote attacker, and the
// attacker's side costs the lab's two cores almost nothing.
//
// Per frame it varies the source address over the configured range, the IP id, the source port
// and the sequence number, and recomputes both checksums. Addresses and ports come from the
// flooder, which refuses anything outside 198.18.0.0/15 before loading this.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct flood_cfg {
    __u32 ifindex; // where the frames go (bpf_redirect): the client's end of the lab veth
    __u32 src_base; // first source address, host byte order
    __u32 src_count;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct flood_cfg);
} flood_cfg SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} flood_seq SEC(".maps");

static __always_inline __u16 fold(__u64 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

SEC("xdp")
int felis_flood(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct flood_cfg *cfg = bpf_map_lookup_elem(&flood_cfg, &zero);
    __u64 *seq = bpf_map_lookup_elem(&flood_seq, &zero);
    if (!cfg || !seq || cfg->src_count == 0)
        return XDP_ABORTED;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    struct tcphdr *tcp = (void *)(ip + 1);
    if ((void *)(tcp + 1) > end)
        return XDP_ABORTED;
    // Live frames are recycled without being reset, so every varying field is written anew.
    __u64 i = __sync_fetch_and_add(seq, 1);
    ip->id = bpf_htons((__u16)i);
    ip->saddr = bpf_htonl(cfg->src_base + (__u32)(i % cfg->src_count));
    ip->check = 0;
    ip->check = fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
    tcp->source = bpf_htons((__u16)(1024 + (i * 7919) % 64000));
    tcp->seq = bpf_htonl((__u32)(i * 2654435761u));
    tcp->check = 0;
    __be32 pseudo[3] = {ip->saddr, ip->daddr, bpf_htonl(IPPROTO_TCP << 16 | sizeof(*tcp))};
    __u64 sum = bpf_csum_diff(0, 0, pseudo, sizeof(pseudo), 0);
    sum = bpf_csum_diff(0, 0, (__be32 *)tcp, sizeof(*tcp), sum);
    tcp->check = fold(sum);
    return bpf_redirect(cfg->ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
