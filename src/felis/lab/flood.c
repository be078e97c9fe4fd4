/*
 * felis lab SYN flooder: spoofed TCP SYNs from a range of blocklisted sources, sent on one
 * interface with AF_PACKET (docs/lab.md, "The flood phases").
 *
 * Frames go out of the named interface only (the lab's veth, whose peer is the server
 * namespace), addressed to the peer's MAC: nothing is routed, nothing leaves the lab. The
 * destination and every source must be in 198.18.0.0/15 (exit status 3 otherwise).
 *
 * Bounded twice: by a packet count (-n) and by a duration (-d), both required; it stops by
 * itself at whichever comes first, or on SIGTERM/SIGINT. With -r it paces itself to that many
 * packets per second, in batches of -b frames (sendmmsg); without, it sends as fast as it can.
 *
 * Output: {"type":"start"} once the socket is ready, then one summary line:
 * {"type":"summary","t":..,"sent":..,"errors":..}. Built by felis on first use: cc -O2.
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

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif

#define FRAME_LEN 54 /* Ethernet 14 + IPv4 20 + TCP 20 */
#define MAX_BATCH 256
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

static void usage(void) {
    fprintf(stderr,
            "usage: flood -i IFACE -m DST_MAC -a DST [-p PORT] -s SRC [-k NSRC] -n COUNT -d SECONDS\n"
            "             [-r PPS] [-b BATCH]\n"
            "DST and every source must be in 198.18.0.0/15; COUNT and SECONDS are required.\n");
}

int main(int argc, char **argv) {
    const char *iface = NULL, *mac = NULL, *dst_text = NULL, *src_text = NULL;
    long port = 12211, nsrc = 1, batch = 64;
    unsigned long long count = 0;
    double duration = 0, rate = 0;
    int opt;
    while ((opt = getopt(argc, argv, "i:m:a:p:s:k:n:d:r:b:h")) != -1) {
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
        default: usage(); return 2;
        }
    }
    unsigned int m[6];
    if (!iface || !mac || !dst_text || !src_text || port < 1 || port > 65535 || nsrc < 1 ||
        nsrc > 65536 || count == 0 || duration <= 0 || duration > MAX_DURATION || rate < 0 ||
        batch < 1 || batch > MAX_BATCH ||
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

    static uint8_t frames[MAX_BATCH][FRAME_LEN];
    static struct iovec iov[MAX_BATCH];
    static struct mmsghdr msgs[MAX_BATCH];
    for (int b = 0; b < MAX_BATCH; b++) {
        uint8_t *f = frames[b];
        for (int k = 0; k < 6; k++) f[k] = (uint8_t)m[k];
        memcpy(f + 6, ifr.ifr_hwaddr.sa_data, 6);
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
        iov[b].iov_base = f;
        iov[b].iov_len = FRAME_LEN;
        msgs[b].msg_hdr.msg_iov = &iov[b];
        msgs[b].msg_hdr.msg_iovlen = 1;
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
    int64_t t0 = now_ns(), stop = t0 + (int64_t)(duration * 1e9), t = t0;
    uint64_t sent = 0, errors = 0;
    while (!g_stop && sent < count && (t = now_ns()) < stop) {
        uint64_t want = (uint64_t)batch;
        if (rate > 0) {
            uint64_t due = (uint64_t)((double)(t - t0) * rate / 1e9);
            if (due <= sent) {
                /* Sleep until the next packet falls due (at most 1 ms, to notice the end). */
                int64_t next = t0 + (int64_t)((double)(sent + 1) * 1e9 / rate);
                int64_t d = next - t;
                if (d > 1000000) d = 1000000;
                struct timespec ts = {0, (long)(d > 0 ? d : 0)};
                nanosleep(&ts, NULL);
                continue;
            }
            if (due - sent < want) want = due - sent;
        }
        if (count - sent < want) want = count - sent;
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
    printf("{\"type\":\"summary\",\"t\":%.3f,\"sent\":%llu,\"errors\":%llu}\n", (double)(t - t0) / 1e9,
           (unsigned long long)(sent - errors), (unsigned long long)errors);
    fflush(stdout);
    close(fd);
    return 0;
}
