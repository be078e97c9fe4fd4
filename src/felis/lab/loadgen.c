/*
 * felis lab load generator: short-lived TCP connections against memcached.
 *
 * Each connection: connect -> one request ("get k" or "version") -> response -> close.
 * Threads each own an epoll instance and a slice of the concurrency (saturating mode)
 * or of the rate (open-loop mode). A reporter thread prints one JSON line per interval
 * and a final summary line. Built by felis on first use: cc -O2 -pthread.
 *
 * Safety: the destination must be in 198.18.0.0/15 (benchmark range) or 127.0.0.0/8.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define NBUCKETS 1024
#define SYN_RETRANS_NS 900000000LL /* first SYN retry comes at 1 s */

enum cstate { C_FREE, C_CONNECTING, C_WAITING };

struct conn {
    int fd;
    enum cstate state;
    int64_t start_ns;
    int64_t connected_ns;
    size_t got;
    char buf[128];
    struct conn *prev, *next; /* in-flight list, ordered by start time */
};

struct stats {
    uint64_t completed, failed, timed_out, syn_retrans, skipped;
    uint64_t hist[NBUCKETS];
};

struct worker {
    pthread_t tid;
    int id;
    int epfd;
    int slots;
    struct conn *conns;
    struct conn *free_list;
    struct conn head; /* sentinel of in-flight list */
    int inflight;
    double rate; /* conn/s for this worker, 0 = saturating */
    uint64_t src_cursor;
    int finished; /* atomic */
    pthread_mutex_t lock;
    struct stats cur;   /* protected by lock, taken by the reporter */
    struct stats total; /* reporter-owned */
};

static struct sockaddr_in g_dst;
static uint32_t g_src_base; /* host order, 0 = no explicit source */
static int g_src_count = 1;
static int g_threads = 2;
static int g_conc = 64;
static double g_rate = 0;
static uint64_t g_count = 0; /* 0 = unbounded by count */
static double g_duration = 10.0;
static int64_t g_deadline_ns = 3000000000LL;
static double g_interval = 1.0;
static const char *g_request = "get k\r\n";
static int g_request_len = 7;
static int g_is_version = 0;
static int64_t g_t0;
static int64_t g_stop_ns;
static volatile int g_stop_starting = 0;
static volatile int g_done = 0;
static uint64_t g_started = 0; /* atomic */
static struct worker *g_workers;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Log-linear histogram in microseconds: exact below 64, ~3% wide buckets above. */
static int bucket_of(uint64_t us) {
    if (us < 64) return (int)us;
    int e = 63 - __builtin_clzll(us); /* floor(log2) >= 6 */
    int shift = e - 5;
    int mant = (int)(us >> shift) - 32; /* 0..31 */
    int b = 64 + (shift - 1) * 32 + mant;
    return b < NBUCKETS ? b : NBUCKETS - 1;
}

static uint64_t bucket_value(int b) {
    if (b < 64) return (uint64_t)b;
    int shift = (b - 64) / 32 + 1;
    int mant = (b - 64) % 32 + 32;
    /* midpoint of the bucket */
    return ((uint64_t)mant << shift) + ((1ULL << shift) >> 1);
}

static uint64_t percentile(const uint64_t *hist, uint64_t n, double p) {
    if (n == 0) return 0;
    uint64_t want = (uint64_t)(p * (double)n);
    if (want >= n) want = n - 1;
    uint64_t seen = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen > want) return bucket_value(b);
    }
    return bucket_value(NBUCKETS - 1);
}

static int is_lab_address(uint32_t host_order) {
    if ((host_order & 0xFFFE0000u) == 0xC6120000u) return 1; /* 198.18.0.0/15 */
    if ((host_order & 0xFF000000u) == 0x7F000000u) return 1; /* 127.0.0.0/8 */
    return 0;
}

static void list_remove(struct conn *c) {
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void list_append(struct worker *w, struct conn *c) {
    c->prev = w->head.prev;
    c->next = &w->head;
    w->head.prev->next = c;
    w->head.prev = c;
}

static void conn_release(struct worker *w, struct conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = C_FREE;
    list_remove(c);
    c->next = w->free_list;
    w->free_list = c;
    w->inflight--;
}

/* Reserve one connection from the global budget; 0 when the count bound is reached. */
static int take_budget(void) {
    if (g_count == 0) return 1;
    uint64_t n = __atomic_fetch_add(&g_started, 1, __ATOMIC_RELAXED);
    return n < g_count;
}

/* Start one connection. Returns 0 on success (in flight), -1 if it failed immediately. */
static int conn_start(struct worker *w, struct stats *st) {
    struct conn *c = w->free_list;
    if (!c) {
        st->skipped++;
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        st->failed++;
        return -1;
    }
    if (g_src_base) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src;
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        uint32_t idx = (uint32_t)(w->src_cursor++ % (uint64_t)g_src_count);
        src.sin_addr.s_addr = htonl(g_src_base + idx);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            close(fd);
            st->failed++;
            return -1;
        }
    }
    int64_t t = now_ns();
    int rc = connect(fd, (struct sockaddr *)&g_dst, sizeof(g_dst));
    if (rc < 0 && errno != EINPROGRESS) {
        close(fd);
        st->failed++;
        return -1;
    }
    w->free_list = c->next;
    c->fd = fd;
    c->state = C_CONNECTING;
    c->start_ns = t;
    c->connected_ns = 0;
    c->got = 0;
    list_append(w, c);
    w->inflight++;
    struct epoll_event ev;
    ev.events = EPOLLOUT;
    ev.data.ptr = c;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        conn_release(w, c);
        st->failed++;
        return -1;
    }
    return 0;
}

static int response_complete(const struct conn *c) {
    if (c->got < 2 || c->buf[c->got - 2] != '\r' || c->buf[c->got - 1] != '\n') return 0;
    if (g_is_version) return c->got >= 9 && memcmp(c->buf, "VERSION ", 8) == 0 ? 1 : -1;
    /* "get" of a key: either END, or VALUE ... data ... END */
    if (c->got >= 5 && memcmp(c->buf + c->got - 5, "END\r\n", 5) == 0) return 1;
    if (memcmp(c->buf, "VALUE ", c->got < 6 ? c->got : 6) == 0) return 0;
    return -1;
}

static void conn_event(struct worker *w, struct conn *c, uint32_t events, struct stats *st) {
    int64_t t = now_ns();
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (t - c->start_ns > SYN_RETRANS_NS) st->syn_retrans++;
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            st->failed++;
            conn_release(w, c);
            return;
        }
        c->connected_ns = t;
        ssize_t n = send(c->fd, g_request, (size_t)g_request_len, MSG_NOSIGNAL);
        if (n != g_request_len) {
            st->failed++;
            conn_release(w, c);
            return;
        }
        c->state = C_WAITING;
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    for (;;) {
        size_t room = sizeof(c->buf) - c->got;
        if (room == 0) { /* larger than any reply we expect: keep only the tail */
            memmove(c->buf, c->buf + sizeof(c->buf) / 2, sizeof(c->buf) / 2);
            c->got = sizeof(c->buf) / 2;
            room = sizeof(c->buf) - c->got;
        }
        ssize_t n = recv(c->fd, c->buf + c->got, room, 0);
        if (n > 0) {
            c->got += (size_t)n;
            int done = response_complete(c);
            if (done == 1) {
                uint64_t us = (uint64_t)((t - c->start_ns) / 1000);
                st->completed++;
                st->hist[bucket_of(us)]++;
                conn_release(w, c);
                return;
            }
            if (done < 0) {
                st->failed++;
                conn_release(w, c);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        st->failed++; /* EOF or error before a complete reply */
        conn_release(w, c);
        return;
    }
}

static void expire(struct worker *w, int64_t t, struct stats *st) {
    while (w->head.next != &w->head) {
        struct conn *c = w->head.next;
        if (t - c->start_ns < g_deadline_ns) break;
        if (c->state == C_CONNECTING) st->syn_retrans++;
        st->timed_out++;
        conn_release(w, c);
    }
}

static void flush_stats(struct worker *w, struct stats *st) {
    pthread_mutex_lock(&w->lock);
    w->cur.completed += st->completed;
    w->cur.failed += st->failed;
    w->cur.timed_out += st->timed_out;
    w->cur.syn_retrans += st->syn_retrans;
    w->cur.skipped += st->skipped;
    for (int b = 0; b < NBUCKETS; b++) w->cur.hist[b] += st->hist[b];
    pthread_mutex_unlock(&w->lock);
    memset(st, 0, sizeof(*st));
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct epoll_event events[256];
    struct stats *st = calloc(1, sizeof(struct stats));
    int dirty = 0;
    int64_t next_start = g_t0;
    double period_ns = w->rate > 0 ? 1e9 / w->rate : 0;
    double acc = (double)g_t0;
    int budget_left = 1;

    for (;;) {
        int64_t t = now_ns();
        if (t >= g_stop_ns) g_stop_starting = 1;
        int starting = !g_stop_starting && budget_left;
        int timeout_ms = 100;
        int retry_soon = 0;

        if (starting && w->rate <= 0) {
            while (w->inflight < w->slots) {
                if (!take_budget()) {
                    budget_left = 0;
                    break;
                }
                dirty = 1;
                if (conn_start(w, st) < 0) {
                    retry_soon = 1; /* immediate failure: back off instead of spinning */
                    break;
                }
            }
        } else if (starting) {
            while (next_start <= t) {
                if (!take_budget()) {
                    budget_left = 0;
                    break;
                }
                dirty = 1;
                conn_start(w, st); /* open loop: a failure does not delay the schedule */
                acc += period_ns;
                next_start = (int64_t)acc;
            }
            /* Rounded up: a sub-millisecond wait rounded down to 0 made epoll_wait return at
             * once, so the client spun on a core and inflated every CPU measurement. Starts
             * that fall due meanwhile are made together on the next wake (at most ~1 ms late). */
            int64_t wait_ns = next_start - now_ns();
            int64_t wait = wait_ns <= 0 ? 0 : (wait_ns + 999999) / 1000000;
            timeout_ms = wait < 100 ? (int)wait : 100;
        }
        if (retry_soon) timeout_ms = 10;
        if (!starting || !budget_left) {
            if (w->inflight == 0) break;
        }
        if (w->head.next != &w->head) {
            int64_t due = (w->head.next->start_ns + g_deadline_ns - t) / 1000000 + 1;
            if (due < timeout_ms) timeout_ms = due < 0 ? 0 : (int)due;
        }
        int n = epoll_wait(w->epfd, events, 256, timeout_ms);
        for (int i = 0; i < n; i++) {
            conn_event(w, events[i].data.ptr, events[i].events, st);
            dirty = 1;
        }
        int64_t t2 = now_ns();
        if (w->head.next != &w->head && t2 - w->head.next->start_ns >= g_deadline_ns) {
            expire(w, t2, st);
            dirty = 1;
        }
        if (dirty) {
            flush_stats(w, st);
            dirty = 0;
        }
    }
    flush_stats(w, st);
    free(st);
    __atomic_store_n(&w->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void take_interval(struct stats *sum) {
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < g_threads; i++) {
        struct worker *w = &g_workers[i];
        pthread_mutex_lock(&w->lock);
        sum->completed += w->cur.completed;
        sum->failed += w->cur.failed;
        sum->timed_out += w->cur.timed_out;
        sum->syn_retrans += w->cur.syn_retrans;
        sum->skipped += w->cur.skipped;
        for (int b = 0; b < NBUCKETS; b++) sum->hist[b] += w->cur.hist[b];
        memset(&w->cur, 0, sizeof(w->cur));
        pthread_mutex_unlock(&w->lock);
    }
}

static void print_stats(const char *kind, double t, const struct stats *s) {
    printf("{\"type\":\"%s\",\"t\":%.3f,\"completed\":%llu,\"failed\":%llu,\"timed_out\":%llu,"
           "\"syn_retrans\":%llu,\"skipped\":%llu,\"p50_us\":%llu,\"p99_us\":%llu}\n",
           kind, t, (unsigned long long)s->completed, (unsigned long long)s->failed,
           (unsigned long long)s->timed_out, (unsigned long long)s->syn_retrans,
           (unsigned long long)s->skipped,
           (unsigned long long)percentile(s->hist, s->completed, 0.50),
           (unsigned long long)percentile(s->hist, s->completed, 0.99));
    fflush(stdout);
}

static void add_stats(struct stats *into, const struct stats *s) {
    into->completed += s->completed;
    into->failed += s->failed;
    into->timed_out += s->timed_out;
    into->syn_retrans += s->syn_retrans;
    into->skipped += s->skipped;
    for (int b = 0; b < NBUCKETS; b++) into->hist[b] += s->hist[b];
}

static void on_signal(int sig) {
    (void)sig;
    g_stop_starting = 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen -a DST [-p PORT] [-s SRC -k NSRC] [-t THREADS] [-c CONC] [-R RATE]\n"
            "               [-n COUNT] [-d SECONDS] [-w DEADLINE_MS] [-m get|version] [-i INTERVAL]\n"
            "DST must be in 198.18.0.0/15 or 127.0.0.0/8.\n");
}

int main(int argc, char **argv) {
    const char *dst = NULL, *src = NULL;
    int port = 12211, opt;
    while ((opt = getopt(argc, argv, "a:p:s:k:t:c:R:n:d:w:m:i:h")) != -1) {
        switch (opt) {
        case 'a': dst = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 's': src = optarg; break;
        case 'k': g_src_count = atoi(optarg); break;
        case 't': g_threads = atoi(optarg); break;
        case 'c': g_conc = atoi(optarg); break;
        case 'R': g_rate = atof(optarg); break;
        case 'n': g_count = strtoull(optarg, NULL, 10); break;
        case 'd': g_duration = atof(optarg); break;
        case 'w': g_deadline_ns = (int64_t)atoll(optarg) * 1000000LL; break;
        case 'm':
            if (strcmp(optarg, "version") == 0) {
                g_request = "version\r\n";
                g_request_len = 9;
                g_is_version = 1;
            } else if (strcmp(optarg, "get") != 0) {
                usage();
                return 2;
            }
            break;
        case 'i': g_interval = atof(optarg); break;
        default: usage(); return 2;
        }
    }
    if (!dst || port <= 0 || port > 65535 || g_threads < 1 || g_threads > 64 || g_conc < 1 ||
        g_src_count < 1 || g_duration <= 0 || g_deadline_ns <= 0 || g_interval <= 0 || g_rate < 0) {
        usage();
        return 2;
    }
    memset(&g_dst, 0, sizeof(g_dst));
    g_dst.sin_family = AF_INET;
    g_dst.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, dst, &g_dst.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad destination address %s\n", dst);
        return 2;
    }
    if (!is_lab_address(ntohl(g_dst.sin_addr.s_addr))) {
        fprintf(stderr, "loadgen: refusing destination %s: only 198.18.0.0/15 and 127.0.0.0/8\n", dst);
        return 3;
    }
    if (src) {
        struct in_addr a;
        if (inet_pton(AF_INET, src, &a) != 1) {
            fprintf(stderr, "loadgen: bad source address %s\n", src);
            return 2;
        }
        g_src_base = ntohl(a.s_addr);
    }
    if (g_threads > g_conc && g_rate <= 0) g_threads = g_conc;

    /* Every in-flight connection is a file descriptor; raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    g_workers = calloc((size_t)g_threads, sizeof(struct worker));
    g_t0 = now_ns();
    g_stop_ns = g_t0 + (int64_t)(g_duration * 1e9);
    for (int i = 0; i < g_threads; i++) {
        struct worker *w = &g_workers[i];
        w->id = i;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->slots = g_conc / g_threads + (i < g_conc % g_threads ? 1 : 0);
        if (w->slots < 1) w->slots = 1;
        w->rate = g_rate > 0 ? g_rate / g_threads : 0;
        w->src_cursor = (uint64_t)i;
        w->conns = calloc((size_t)w->slots, sizeof(struct conn));
        w->head.next = w->head.prev = &w->head;
        for (int j = w->slots - 1; j >= 0; j--) {
            w->conns[j].fd = -1;
            w->conns[j].next = w->free_list;
            w->free_list = &w->conns[j];
        }
        pthread_mutex_init(&w->lock, NULL);
    }
    for (int i = 0; i < g_threads; i++) pthread_create(&g_workers[i].tid, NULL, worker_main, &g_workers[i]);

    struct stats *iv = calloc(1, sizeof(struct stats));
    struct stats *total = calloc(1, sizeof(struct stats));
    int64_t interval_ns = (int64_t)(g_interval * 1e9);
    int64_t next_report = g_t0 + interval_ns;
    int running = g_threads;
    while (running > 0) {
        int64_t t = now_ns();
        if (t < next_report) {
            int64_t d = next_report - t;
            if (d > 20000000) d = 20000000;
            struct timespec ts = {0, (long)d};
            nanosleep(&ts, NULL);
        }
        running = 0;
        for (int i = 0; i < g_threads; i++)
            if (!__atomic_load_n(&g_workers[i].finished, __ATOMIC_ACQUIRE)) running++;
        t = now_ns();
        if (t >= next_report || running == 0) {
            take_interval(iv);
            add_stats(total, iv);
            print_stats("interval", (double)(t - g_t0) / 1e9, iv);
            next_report += interval_ns;
        }
    }
    for (int i = 0; i < g_threads; i++) pthread_join(g_workers[i].tid, NULL);
    print_stats("summary", (double)(now_ns() - g_t0) / 1e9, total);
    return 0;
}
