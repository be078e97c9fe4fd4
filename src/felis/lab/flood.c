/*
 * felis lab SYN flooder: spoofed TCP SYNs from a range of blocklisted sources, sent on one
 * interface, the client's end of the lab's veth pair (docs/lab.md, "The flood phases").
 *
 * Two ways to send, the same frames:
 *  - socket mode (default): AF_PACKET, sendmmsg in batches of -b. The kernel builds a socket
 *    buffer for every frame on the sender's side, as a local program's packets would have.
 *  - driver mode (-x GENERATOR.o -H HOLD_IFACE): the frames are made by floodgen.c, run with
 *    BPF_PROG_TEST_RUN in live-frames mode, and handed to the veth's XDP transmit path. They
 *    reach the server's end as driver buffers, as from a NIC, with no socket buffer built; the
 *    server's end needs NAPI (an XDP program, or GRO on) to take them. The generator stays
 *    attached (generic mode) to HOLD_IFACE, an interface that carries no traffic, so each run
 *    does not re-register it with the kernel's XDP dispatcher (an RCU wait of tens of ms).
 *    -b is then the frames per run, -B the frames per transmit flush within a run (the
 *    receiving ring holds 256); the veth's own counters say how many were delivered.
 *
 * Frames go out of the named interface only, addressed to the peer's MAC: nothing is routed,
 * nothing leaves the lab. The destination and every source must be in 198.18.0.0/15 (exit
 * status 3 otherwise).
 *
 * Bounded twice: by a packet count (-n) and by a duration (-d), both required; it stops by
 * itself at whichever comes first, or on SIGTERM/SIGINT. With -r it paces itself to that many
 * packets per second; without, it sends as fast as it can.
 *
 * Output: {"type":"start"} once ready, then one summary line:
 * {"type":"summary","t":..,"sent":..,"errors":..,"generated":..}: frames the server's end took,
 * frames the way refused (a full queue), frames made. Built by felis on first use:
 * cc -O2 ... -lbpf.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif

#define FRAME_LEN 54 /* Ethernet 14 + IPv4 20 + TCP 20 */
#define MAX_BATCH 256 /* socket mode: frames per sendmmsg */
#define MAX_RUN 65536 /* driver mode: frames per test run */
#define MAX_FLUSH 256 /* driver mode: frames per transmit flush within a run */
#define MAX_DURATION 3600.0

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int is_bench_address(uint32_t host_order) {
    return (host_order & 0xFFFE0000u) == 0xC6120000u; /* 198.18.0.0/15 */
}

static uint16_t fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

static uint32_t add16(uint32_t sum, const uint8_t *p, size_t len) {
    for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1) sum += (uint32_t)(p[len - 1] << 8);
    return sum;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* One SYN, numbered `i`: source address, source port and sequence number vary with it. */
static void fill_frame(uint8_t *f, uint64_t i, uint32_t src_base, uint32_t nsrc, uint32_t dst) {
    uint8_t *ip = f + 14, *tcp = f + 34;
    uint32_t src = src_base + (uint32_t)(i % nsrc);
    put16(ip + 4, (uint16_t)i); /* id */
    put32(ip + 12, src);
    ip[10] = ip[11] = 0;
    put16(ip + 10, fold(add16(0, ip, 20)));
    put16(tcp, (uint16_t)(1024 + (i * 7919) % 64000));
    put32(tcp + 4, (uint32_t)(i * 2654435761u));
    tcp[16] = tcp[17] = 0;
    uint8_t pseudo[12];
    put32(pseudo, src);
    put32(pseudo + 4, dst);
    pseudo[8] = 0;
    pseudo[9] = IPPROTO_TCP;
    put16(pseudo + 10, 20);
    put16(tcp + 16, fold(add16(add16(0, pseudo, 12), tcp, 20)));
}

/* The frame every SYN starts from; fill_frame (socket) or floodgen.c (driver) varies it. */
static void template_frame(uint8_t *f, const unsigned int mac[6], const uint8_t *own_mac,
                           uint32_t dst, long port) {
    memset(f, 0, FRAME_LEN);
    for (int k = 0; k < 6; k++) f[k] = (uint8_t)mac[k];
    memcpy(f + 6, own_mac, 6);
    put16(f + 12, ETHERTYPE_IP);
    uint8_t *ip = f + 14, *tcp = f + 34;
    ip[0] = 0x45;
    put16(ip + 2, 40);
    put16(ip + 6, 0x4000); /* DF */
    ip[8] = 64;
    ip[9] = IPPROTO_TCP;
    put32(ip + 16, dst);
    put16(tcp + 2, (uint16_t)port);
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; /* SYN */
    put16(tcp + 14, 64240);
}

/* The sum of the interface's ethtool statistics named tx_queue_<n>_<suffix> (veth: frames its
 * XDP transmit path handed to the peer, or could not). -1 when they cannot be read. */
static long long veth_tx_stat(int fd, const char *iface, const char *suffix) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", iface);
    struct {
        struct ethtool_sset_info hdr;
        uint32_t buf[1];
    } sset = {.hdr = {.cmd = ETHTOOL_GSSET_INFO, .sset_mask = 1ULL << ETH_SS_STATS}};
    ifr.ifr_data = (void *)&sset;
    if (ioctl(fd, SIOCETHTOOL, &ifr) < 0 || !sset.hdr.sset_mask) return -1;
    uint32_t n = sset.buf[0];
    struct ethtool_gstrings *names = calloc(1, sizeof(*names) + (size_t)n * ETH_GSTRING_LEN);
    struct ethtool_stats *stats = calloc(1, sizeof(*stats) + (size_t)n * sizeof(uint64_t));
    long long total = -1;
    if (names && stats) {
        names->cmd = ETHTOOL_GSTRINGS;
        names->string_set = ETH_SS_STATS;
        names->len = n;
        stats->cmd = ETHTOOL_GSTATS;
        stats->n_stats = n;
        ifr.ifr_data = (void *)names;
        int ok = ioctl(fd, SIOCETHTOOL, &ifr) == 0;
        ifr.ifr_data = (void *)stats;
        ok = ok && ioctl(fd, SIOCETHTOOL, &ifr) == 0;
        for (uint32_t k = 0; ok && k < n; k++) {
            char name[ETH_GSTRING_LEN + 1] = {0};
            memcpy(name, names->data + (size_t)k * ETH_GSTRING_LEN, ETH_GSTRING_LEN);
            unsigned q;
            int used = 0;
            if (sscanf(name, "tx_queue_%u_%n", &q, &used) == 1 && used > 0 &&
                strcmp(name + used, suffix) == 0)
                total = (total < 0 ? 0 : total) + (long long)stats->data[k];
        }
        if (ok && total < 0) total = 0;
    }
    free(names);
    free(stats);
    return total;
}

static void usage(void) {
    fprintf(stderr,
            "usage: flood -i IFACE -m DST_MAC -a DST [-p PORT] -s SRC [-k NSRC] -n COUNT -d SECONDS\n"
            "             [-r PPS] [-b BATCH] [-x GENERATOR.o -H HOLD_IFACE [-B FLUSH]]\n"
            "DST and every source must be in 198.18.0.0/15; COUNT and SECONDS are required.\n"
            "-x and -H together select driver mode (BPF live frames into IFACE's XDP path).\n");
}

struct driver {
    int prog_fd;
    int hold_ifindex;
    struct bpf_object *obj;
};

struct flood_cfg {
    uint32_t ifindex, src_base, src_count, pad;
};

/* Load the generator, configure it and park it on the hold interface; 0 when ready. */
static int driver_open(struct driver *d, const char *obj_path, const char *hold, int ifindex,
                       uint32_t src_base, uint32_t nsrc) {
    libbpf_set_print(NULL);
    d->obj = bpf_object__open_file(obj_path, NULL);
    if (!d->obj || bpf_object__load(d->obj)) {
        fprintf(stderr, "flood: cannot load the generator %s: %s\n", obj_path, strerror(errno));
        return -1;
    }
    struct bpf_program *prog = bpf_object__find_program_by_name(d->obj, "felis_flood");
    int cfg_fd = bpf_object__find_map_fd_by_name(d->obj, "flood_cfg");
    struct flood_cfg cfg = {(uint32_t)ifindex, src_base, nsrc, 0};
    uint32_t zero = 0;
    if (!prog || cfg_fd < 0 || bpf_map_update_elem(cfg_fd, &zero, &cfg, 0)) {
        fprintf(stderr, "flood: the generator %s is not felis' floodgen\n", obj_path);
        return -1;
    }
    d->prog_fd = bpf_program__fd(prog);
    d->hold_ifindex = (int)if_nametoindex(hold);
    if (!d->hold_ifindex ||
        bpf_xdp_attach(d->hold_ifindex, d->prog_fd,
                       XDP_FLAGS_SKB_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL)) {
        fprintf(stderr, "flood: cannot park the generator on %s: %s\n", hold, strerror(errno));
        d->hold_ifindex = 0;
        return -1;
    }
    return 0;
}

static void driver_close(struct driver *d) {
    if (d->hold_ifindex) bpf_xdp_detach(d->hold_ifindex, XDP_FLAGS_SKB_MODE, NULL);
    if (d->obj) bpf_object__close(d->obj);
}

int main(int argc, char **argv) {
    const char *iface = NULL, *mac = NULL, *dst_text = NULL, *src_text = NULL;
    const char *generator = NULL, *hold = NULL;
    long port = 12211, nsrc = 1, batch = 64, flush = 16;
    unsigned long long count = 0;
    double duration = 0, rate = 0;
    int opt;
    while ((opt = getopt(argc, argv, "i:m:a:p:s:k:n:d:r:b:B:x:H:h")) != -1) {
        switch (opt) {
        case 'i': iface = optarg; break;
        case 'm': mac = optarg; break;
        case 'a': dst_text = optarg; break;
        case 'p': port = atol(optarg); break;
        case 's': src_text = optarg; break;
        case 'k': nsrc = atol(optarg); break;
        case 'n': count = strtoull(optarg, NULL, 10); break;
        case 'd': duration = atof(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'b': batch = atol(optarg); break;
        case 'B': flush = atol(optarg); break;
        case 'x': generator = optarg; break;
        case 'H': hold = optarg; break;
        default: usage(); return 2;
        }
    }
    int driver_mode = generator != NULL;
    unsigned int m[6];
    if (!iface || !mac || !dst_text || !src_text || port < 1 || port > 65535 || nsrc < 1 ||
        nsrc > 65536 || count == 0 || duration <= 0 || duration > MAX_DURATION || rate < 0 ||
        batch < 1 || batch > (driver_mode ? MAX_RUN : MAX_BATCH) || flush < 1 ||
        flush > MAX_FLUSH || (!generator != !hold) ||
        sscanf(mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        usage();
        return 2;
    }
    struct in_addr dst_a, src_a;
    if (inet_pton(AF_INET, dst_text, &dst_a) != 1 || inet_pton(AF_INET, src_text, &src_a) != 1) {
        fprintf(stderr, "flood: bad address\n");
        return 2;
    }
    uint32_t dst = ntohl(dst_a.s_addr), src_base = ntohl(src_a.s_addr);
    uint32_t src_last = src_base + (uint32_t)(nsrc - 1);
    if (!is_bench_address(dst) || !is_bench_address(src_base) || !is_bench_address(src_last) ||
        src_last < src_base) {
        fprintf(stderr, "flood: refusing: destination and sources must be in 198.18.0.0/15\n");
        return 3;
    }

    int fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: send only, receive nothing */
    if (fd < 0) {
        fprintf(stderr, "flood: socket(AF_PACKET): %s\n", strerror(errno));
        return 1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", iface);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
        fprintf(stderr, "flood: no interface %s: %s\n", iface, strerror(errno));
        return 1;
    }
    int ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
        fprintf(stderr, "flood: %s has no hardware address: %s\n", iface, strerror(errno));
        return 1;
    }
    uint8_t own_mac[6];
    memcpy(own_mac, ifr.ifr_hwaddr.sa_data, 6);

    static uint8_t frames[MAX_BATCH][FRAME_LEN];
    static struct iovec iov[MAX_BATCH];
    static struct mmsghdr msgs[MAX_BATCH];
    struct driver drv = {0};
    long long delivered0 = 0, refused0 = 0;
    if (driver_mode) {
        template_frame(frames[0], m, own_mac, dst, port);
        delivered0 = veth_tx_stat(fd, iface, "xdp_xmit");
        refused0 = veth_tx_stat(fd, iface, "xdp_xmit_errors");
        if (delivered0 < 0 || refused0 < 0) {
            fprintf(stderr, "flood: %s has no XDP transmit counters (driver mode needs a veth)\n",
                    iface);
            return 1;
        }
        if (driver_open(&drv, generator, hold, ifindex, src_base, (uint32_t)nsrc)) {
            driver_close(&drv);
            return 1;
        }
    } else {
        struct sockaddr_ll sll;
        memset(&sll, 0, sizeof(sll));
        sll.sll_family = AF_PACKET;
        sll.sll_ifindex = ifindex;
        if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
            fprintf(stderr, "flood: bind %s: %s\n", iface, strerror(errno));
            return 1;
        }
        /* Straight to the driver: the client side's qdisc is not what is measured. */
        int one = 1;
        setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
        for (int b = 0; b < MAX_BATCH; b++) {
            template_frame(frames[b], m, own_mac, dst, port);
            iov[b].iov_base = frames[b];
            iov[b].iov_len = FRAME_LEN;
            msgs[b].msg_hdr.msg_iov = &iov[b];
            msgs[b].msg_hdr.msg_iovlen = 1;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* Pacing sleeps are short; the default 50 us slack would make them lumpy. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

    printf("{\"type\":\"start\"}\n");
    fflush(stdout);
    /* A socket sends what is due as soon as one frame is; a test run waits for a whole batch
     * (each run has a fixed cost, so runs of one frame would make the flooder the load). */
    uint64_t chunk = driver_mode ? (uint64_t)batch : 1;
    int64_t t0 = now_ns(), stop = t0 + (int64_t)(duration * 1e9), t = t0;
    uint64_t sent = 0, errors = 0;
    while (!g_stop && sent < count && (t = now_ns()) < stop) {
        uint64_t want = (uint64_t)batch;
        if (rate > 0) {
            uint64_t due = (uint64_t)((double)(t - t0) * rate / 1e9);
            uint64_t need = count - sent < chunk ? count - sent : chunk;
            if (due < sent + need) {
                /* Sleep until the next send falls due (at most 1 ms, to notice the end). */
                int64_t next = t0 + (int64_t)((double)(sent + need) * 1e9 / rate);
                int64_t d = next - t;
                if (d > 1000000) d = 1000000;
                struct timespec ts = {0, (long)(d > 0 ? d : 0)};
                nanosleep(&ts, NULL);
                continue;
            }
            if (due - sent < want) want = due - sent;
        }
        if (count - sent < want) want = count - sent;
        if (driver_mode) {
            LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frames[0], .data_size_in = FRAME_LEN,
                        .repeat = (uint32_t)want, .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
                        .batch_size = want < (uint64_t)flush ? (uint32_t)want : (uint32_t)flush);
            if (bpf_prog_test_run_opts(drv.prog_fd, &run) < 0) {
                if (errno == EINTR) continue;
                fprintf(stderr, "flood: test run failed: %s\n", strerror(errno));
                driver_close(&drv);
                return 1;
            }
            sent += want;
            continue;
        }
        for (uint64_t b = 0; b < want; b++)
            fill_frame(frames[b], sent + b, src_base, (uint32_t)nsrc, dst);
        int n = sendmmsg(fd, msgs, (unsigned int)want, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            /* A full queue on the way is part of being flooded: count it, keep going. */
            errors += want;
            sent += want;
            continue;
        }
        sent += (uint64_t)n;
        if ((uint64_t)n < want) {
            errors += want - (uint64_t)n;
            sent += want - (uint64_t)n;
        }
    }
    t = now_ns();
    uint64_t generated = sent, taken = sent - errors;
    if (driver_mode) {
        driver_close(&drv);
        long long delivered = veth_tx_stat(fd, iface, "xdp_xmit");
        long long refused = veth_tx_stat(fd, iface, "xdp_xmit_errors");
        taken = delivered < delivered0 ? 0 : (uint64_t)(delivered - delivered0);
        errors = refused < refused0 ? 0 : (uint64_t)(refused - refused0);
    }
    printf("{\"type\":\"summary\",\"t\":%.3f,\"sent\":%llu,\"errors\":%llu,\"generated\":%llu}\n",
           (double)(t - t0) / 1e9, (unsigned long long)taken, (unsigned long long)errors,
           (unsigned long long)generated);
    fflush(stdout);
    close(fd);
    return 0;
}
