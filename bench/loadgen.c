/*
 * loadgen.c - a closed-loop load generator for the echo-frame protocol.
 *
 * The protocol: a frame is a 4-byte big-endian length N followed by N
 * payload bytes; the server sends every frame back to its sender unchanged.
 *
 * Load mode (the default)
 *   Every connection keeps --inflight frames outstanding.  The first 8
 *   payload bytes of each frame hold its send time (CLOCK_MONOTONIC, in
 *   nanoseconds, native byte order: only we read it back), so a frame's
 *   round trip is known exactly: it ends at the read() that completes the
 *   echo.  Each returned frame is replaced by a new one, and the
 *   replacements for all frames completed by one read() leave in one
 *   write().  The client batches as a fair server does, and pays two
 *   system calls per batch rather than two per frame: that is what keeps
 *   it cheap enough not to be the bottleneck.
 *
 *   The run has a warm-up (frames are echoed but not counted) and then a
 *   measured window.  Progress notes go to stderr; "loadgen: measuring" is
 *   printed there when the window opens, so a runner can sample the
 *   server's CPU over the same window.  At the end ONE line of JSON goes
 *   to stdout:
 *
 *     frames        frames completed in the measured window
 *     seconds       length of the measured window
 *     frames_per_s  frames / seconds
 *     p50_us, p99_us, p999_us
 *                   round-trip latency percentiles, microseconds
 *     errors        wrong length headers, damaged send times, and
 *                   connections the server closed (whole run)
 *     cpu_percent   our own CPU use over the window (getrusage)
 *     connections, inflight, size
 *                   the settings, for the record
 *
 * Idle mode (--idle)
 *   Open the connections, send nothing, print "ready" on stdout once all
 *   are connected, and hold them until stdin closes or --duration passes;
 *   then print {"connections", "seconds", "errors"} as one line of JSON.
 *   Used to measure a server's memory per idle connection.
 *
 * Options
 *   --host 127.0.0.1   --port P (required)   --connections 100
 *   --inflight 16      --size 64 (bytes, at least 8)
 *   --duration 10      --warmup 2 (seconds)
 *   --connect-rate 2000 (new connections per second, 0: no limit)
 *   --sources 1 (spread connections over 127.0.0.1 .. 127.0.0.<n>)
 *   --idle
 *
 * Safety
 *   Only loopback addresses (127.0.0.0/8) are accepted, and an alarm ends
 *   the process shortly after the last phase should the loop ever fail to
 *   stop by itself.
 *
 * Build: gcc -O2 -Wall -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#define HEADER_BYTES 4
#define STAMP_BYTES 8           /* the send time carried in each payload */
#define MAX_EVENTS 256
#define STDIN_TAG UINT32_MAX    /* epoll tag of stdin in idle mode */

/* Connections are opened at a steady rate, CONNECT_BURST at a time.
 * A burst of thousands of SYNs overflows a listener's accept queue (a
 * Python server's backlog is often 100), and with SYN cookies on, an
 * overflowing handshake can be lost silently: our side counts the
 * connection as established, the server never heard of it, and an idle
 * connection never finds out. */
#define CONNECT_BURST 32
#define DEFAULT_CONNECT_RATE 2000      /* per second; 10,000 in 5 s */
#define CONNECT_TIMEOUT_S 60           /* beyond the paced time */

/* Extra seconds, past every phase, before the alarm kills the process. */
#define HARD_TIMEOUT_SLACK_S 15

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */

struct options {
    const char *host;
    int port;
    int connections;
    int inflight;
    int size;          /* payload bytes per frame */
    double duration;   /* measured seconds; hold time in idle mode */
    double warmup;
    int idle;
    int sources;       /* spread over 127.0.0.1 .. 127.0.0.<sources> */
    int connect_rate;  /* new connections per second; 0: no limit */
};

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --port P [--host 127.0.0.1] [--connections 100]\n"
            "          [--inflight 16] [--size 64] [--duration 10]\n"
            "          [--warmup 2] [--sources 1] [--connect-rate 2000]\n"
            "          [--idle]\n",
            argv0);
    exit(2);
}

static void parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"connections", required_argument, NULL, 'c'},
        {"inflight", required_argument, NULL, 'i'},
        {"size", required_argument, NULL, 's'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"sources", required_argument, NULL, 'S'},
        {"connect-rate", required_argument, NULL, 'r'},
        {"idle", no_argument, NULL, 'I'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){
        .host = "127.0.0.1",
        .connections = 100,
        .inflight = 16,
        .size = 64,
        .duration = 10.0,
        .warmup = 2.0,
        .sources = 1,
        .connect_rate = DEFAULT_CONNECT_RATE,
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = atoi(optarg); break;
        case 'c': o->connections = atoi(optarg); break;
        case 'i': o->inflight = atoi(optarg); break;
        case 's': o->size = atoi(optarg); break;
        case 'd': o->duration = atof(optarg); break;
        case 'w': o->warmup = atof(optarg); break;
        case 'S': o->sources = atoi(optarg); break;
        case 'r': o->connect_rate = atoi(optarg); break;
        case 'I': o->idle = 1; break;
        default: usage(argv[0]);
        }
    }
    if (optind != argc || o->port <= 0 || o->port > 65535)
        usage(argv[0]);
    /* A day at most keeps the run, and the alarm, bounded. */
    if (o->connections < 1 || o->inflight < 1 || o->duration < 0 ||
        o->duration > 86400 || o->warmup < 0 || o->warmup > 86400 ||
        o->sources < 1 || o->sources > 254 || o->connect_rate < 0) {
        fprintf(stderr, "loadgen: an option is out of range\n");
        exit(2);
    }
    /* The payload must hold the send time; 16 MiB keeps buffers sane. */
    if (o->size < STAMP_BYTES || o->size > (16 << 20)) {
        fprintf(stderr, "loadgen: --size must be 8 .. 16777216\n");
        exit(2);
    }
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t seconds_to_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static uint32_t read_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void write_be32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

/* Accept only 127.0.0.0/8, so a typo can never load someone else. */
static struct in_addr loopback_address(const char *host)
{
    struct in_addr addr;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr) != 1 ||
        (ntohl(addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen: refusing %s: only IPv4 loopback "
                        "(127.0.0.0/8) may be targeted\n", host);
        exit(2);
    }
    return addr;
}

/* Each connection needs a descriptor; ask for the hard limit up front. */
static void raise_fd_limit(int connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)connections + 16 > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %d connections exceed the open-file "
                        "limit %lu\n", connections,
                (unsigned long)rl.rlim_cur);
        exit(2);
    }
}

/* ------------------------------------------------------------------ */
/* Latency histogram                                                    */
/*                                                                      */
/* Log-linear: one bucket per microsecond below 1024 us, then every     */
/* power-of-two octave is cut into 128 equal buckets (under 0.8 %       */
/* relative error).  Recording is a shift and an increment.             */
/* ------------------------------------------------------------------ */

#define LINEAR_BITS 10                    /* 1 us buckets below 1024 us */
#define LINEAR_US (1u << LINEAR_BITS)
#define SUB_BITS 7                        /* 128 buckets per octave */
#define SUB_COUNT (1u << SUB_BITS)
#define OCTAVES 24                        /* up to 2^34 us: hours */
#define BUCKETS (LINEAR_US + OCTAVES * SUB_COUNT)

static uint64_t histogram[BUCKETS];
static uint64_t histogram_total;

static unsigned bucket_of(uint64_t us)
{
    if (us < LINEAR_US)
        return (unsigned)us;
    unsigned octave = 63 - __builtin_clzll(us);  /* 2^octave <= us */
    if (octave >= LINEAR_BITS + OCTAVES)
        return BUCKETS - 1;
    unsigned sub = (unsigned)(us >> (octave - SUB_BITS)) - SUB_COUNT;
    return LINEAR_US + (octave - LINEAR_BITS) * SUB_COUNT + sub;
}

/* The middle of a bucket, in microseconds: our estimate of its values. */
static double bucket_middle(unsigned b)
{
    if (b < LINEAR_US)
        return b + 0.5;
    unsigned octave = LINEAR_BITS + (b - LINEAR_US) / SUB_COUNT;
    unsigned sub = (b - LINEAR_US) % SUB_COUNT;
    double width = (double)(1ull << (octave - SUB_BITS));
    return (double)(1ull << octave) + sub * width + width / 2;
}

static void histogram_add(uint64_t ns)
{
    histogram[bucket_of(ns / 1000)]++;
    histogram_total++;
}

static double histogram_percentile(double q)
{
    if (histogram_total == 0)
        return 0;
    double exact = q * (double)histogram_total;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact)
        rank++;                         /* round up: the nearest rank */
    uint64_t seen = 0;
    for (unsigned b = 0; b < BUCKETS; b++) {
        seen += histogram[b];
        if (seen >= rank && seen > 0)
            return bucket_middle(b);
    }
    return bucket_middle(BUCKETS - 1);
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */
/* ------------------------------------------------------------------ */

/* Closed loop bounds every buffer: a connection never has more than
 * `inflight` frames unsent, in the network or unread, so both buffers
 * are allocated once at inflight * frame_bytes and never grow. */
struct conn {
    int fd;
    int open;
    int want_out;           /* EPOLLOUT registered: a write was short */
    size_t rlen, wlen;
    unsigned char *rbuf, *wbuf;
};

struct state {
    struct options opt;
    int epoll_fd;
    struct conn *conns;
    int open_count;
    size_t frame_bytes;     /* header + payload */
    size_t buffer_bytes;
    unsigned char *frame_template;
    uint64_t run_start;     /* when every connection was up */
    int measuring;          /* past the warm-up */
    uint64_t frames;        /* completed during the measured window */
    uint64_t errors;
};

static void watch(struct state *st, int op, int fd, uint32_t events,
                  uint32_t tag)
{
    struct epoll_event ev = {.events = events, .data.u32 = tag};
    if (epoll_ctl(st->epoll_fd, op, fd, &ev) != 0)
        die("epoll_ctl");
}

static void conn_close(struct state *st, struct conn *c)
{
    if (!c->open)
        return;
    close(c->fd);   /* also removes it from the epoll set */
    c->open = 0;
    st->open_count--;
}

/* A broken connection is an error of the run, not a reason to stop it. */
static void conn_fail(struct state *st, struct conn *c, const char *why)
{
    fprintf(stderr, "loadgen: connection closed: %s\n", why);
    st->errors++;
    conn_close(st, c);
}

static int open_socket(struct state *st, int index, struct in_addr dst)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    /* Small frames must not wait for Nagle's algorithm. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (st->opt.sources > 1) {
        /* Choose the source address but leave the port to connect(),
         * so each source has the whole ephemeral range to itself. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                   sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + index % st->opt.sources);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0)
            die("bind source address");
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = dst};
    sa.sin_port = htons(st->opt.port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
        errno != EINPROGRESS)
        die("connect");
    return fd;
}

/* Report whether a connect that signalled writability succeeded. */
static int connect_finished(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        errno = err;
        return 0;
    }
    return 1;
}

/* Seconds the connect phase may take: the paced time and a margin. */
static double connect_budget_s(const struct options *o)
{
    double paced = o->connect_rate ? (double)o->connections / o->connect_rate
                                   : 0;
    return paced + CONNECT_TIMEOUT_S;
}

/* How many connections may have been started `elapsed` ns into the
 * connect phase. */
static int connect_allowance(const struct options *o, uint64_t elapsed)
{
    if (o->connect_rate == 0)
        return o->connections;
    double allowed = CONNECT_BURST + o->connect_rate * (elapsed / 1e9);
    return allowed < o->connections ? (int)allowed : o->connections;
}

/* Open every connection at the paced rate.  On return every connection
 * is up and watched for input only. */
static void connect_all(struct state *st)
{
    struct in_addr dst = loopback_address(st->opt.host);
    struct epoll_event events[MAX_EVENTS];
    uint64_t start = now_ns();
    uint64_t give_up = start + seconds_to_ns(connect_budget_s(&st->opt));
    int started = 0;

    while (st->open_count < st->opt.connections) {
        int allowed = connect_allowance(&st->opt, now_ns() - start);
        for (; started < allowed; started++) {
            struct conn *c = &st->conns[started];
            c->fd = open_socket(st, started, dst);
            watch(st, EPOLL_CTL_ADD, c->fd, EPOLLOUT, (uint32_t)started);
        }
        /* Wake often while there are connections left to start. */
        int timeout = started < st->opt.connections ? 1 : 100;
        int n = epoll_wait(st->epoll_fd, events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = &st->conns[events[i].data.u32];
            if (!connect_finished(c->fd))
                die("connect");
            watch(st, EPOLL_CTL_MOD, c->fd, EPOLLIN, events[i].data.u32);
            c->open = 1;
            st->open_count++;
        }
        if (now_ns() > give_up) {
            fprintf(stderr, "loadgen: only %d of %d connected in time\n",
                    st->open_count, st->opt.connections);
            exit(1);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Load mode: the closed loop                                           */
/* ------------------------------------------------------------------ */

static void set_want_out(struct state *st, struct conn *c, int want)
{
    if (c->want_out == want)
        return;
    c->want_out = want;
    uint32_t events = EPOLLIN | (want ? EPOLLOUT : 0);
    watch(st, EPOLL_CTL_MOD, c->fd, events, (uint32_t)(c - st->conns));
}

/* Write what is queued; keep the rest and ask for EPOLLOUT if short. */
static void conn_flush(struct state *st, struct conn *c)
{
    if (c->wlen == 0)
        return;
    ssize_t n = send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN)
            conn_fail(st, c, strerror(errno));
        else
            set_want_out(st, c, 1);
        return;
    }
    c->wlen -= (size_t)n;
    memmove(c->wbuf, c->wbuf + n, c->wlen);
    set_want_out(st, c, c->wlen > 0);
}

/* Queue `count` fresh frames stamped with `stamp`. */
static void conn_queue(struct state *st, struct conn *c, int count,
                       uint64_t stamp)
{
    for (int i = 0; i < count; i++) {
        unsigned char *f = c->wbuf + c->wlen;
        memcpy(f, st->frame_template, st->frame_bytes);
        memcpy(f + HEADER_BYTES, &stamp, STAMP_BYTES);
        c->wlen += st->frame_bytes;
    }
}

/* Consume every complete frame in the read buffer, recording latency.
 * Returns how many were complete, or -1 if the stream is corrupt. */
static int conn_parse(struct state *st, struct conn *c, uint64_t now)
{
    size_t off = 0;
    int done = 0;
    while (c->rlen - off >= HEADER_BYTES) {
        unsigned char *f = c->rbuf + off;
        /* A wrong length means the framing is lost for good. */
        if (read_be32(f) != (uint32_t)st->opt.size)
            return -1;
        if (c->rlen - off < st->frame_bytes)
            break;
        uint64_t sent;
        memcpy(&sent, f + HEADER_BYTES, STAMP_BYTES);
        if (sent < st->run_start || sent > now) {
            st->errors++;               /* payload damaged in transit */
        } else if (st->measuring) {
            histogram_add(now - sent);
            st->frames++;
        }
        off += st->frame_bytes;
        done++;
    }
    c->rlen -= off;
    memmove(c->rbuf, c->rbuf + off, c->rlen);
    return done;
}

/* One read, then one write carrying a replacement for every frame that
 * read completed. */
static void conn_readable(struct state *st, struct conn *c)
{
    size_t room = st->buffer_bytes - c->rlen;
    if (room == 0) {
        conn_fail(st, c, "server sent more than was asked");
        return;
    }
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, room, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        conn_fail(st, c, n == 0 ? "closed by server" : strerror(errno));
        return;
    }
    c->rlen += (size_t)n;
    uint64_t now = now_ns();
    int done = conn_parse(st, c, now);
    if (done < 0) {
        conn_fail(st, c, "bad length header");
        return;
    }
    conn_queue(st, c, done, now);
    conn_flush(st, c);
}

static void allocate_buffers(struct state *st)
{
    st->frame_bytes = HEADER_BYTES + (size_t)st->opt.size;
    st->buffer_bytes = st->frame_bytes * (size_t)st->opt.inflight;
    st->frame_template = calloc(1, st->frame_bytes);
    if (!st->frame_template)
        die("calloc");
    write_be32(st->frame_template, (uint32_t)st->opt.size);
    for (int i = 0; i < st->opt.connections; i++) {
        struct conn *c = &st->conns[i];
        c->rbuf = malloc(st->buffer_bytes);
        c->wbuf = malloc(st->buffer_bytes);
        if (!c->rbuf || !c->wbuf)
            die("malloc (try fewer --inflight or a smaller --size)");
    }
}

/* Milliseconds until `deadline`, clamped so the loop checks the clock at
 * least every 100 ms. */
static int wait_ms(uint64_t now, uint64_t deadline)
{
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now) / 1000000u + 1;
    return ms > 100 ? 100 : (int)ms;
}

static void print_load_result(struct state *st, double seconds,
                              double cpu)
{
    double rate = seconds > 0 ? st->frames / seconds : 0;
    printf("{\"frames\": %llu, \"seconds\": %.3f, \"frames_per_s\": %.1f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"errors\": %llu, \"cpu_percent\": %.1f, "
           "\"connections\": %d, \"inflight\": %d, \"size\": %d}\n",
           (unsigned long long)st->frames, seconds, rate,
           histogram_percentile(0.50), histogram_percentile(0.99),
           histogram_percentile(0.999), (unsigned long long)st->errors,
           seconds > 0 ? 100.0 * cpu / seconds : 0, st->opt.connections,
           st->opt.inflight, st->opt.size);
    fflush(stdout);
}

static void run_load(struct state *st)
{
    allocate_buffers(st);
    connect_all(st);
    fprintf(stderr, "loadgen: %d connections up, warming up\n",
            st->open_count);

    st->run_start = now_ns();
    uint64_t measure_at = st->run_start + seconds_to_ns(st->opt.warmup);
    uint64_t stop_at = measure_at + seconds_to_ns(st->opt.duration);
    uint64_t measure_start = 0;
    double cpu_start = 0;

    for (int i = 0; i < st->opt.connections; i++) {
        conn_queue(st, &st->conns[i], st->opt.inflight, st->run_start);
        conn_flush(st, &st->conns[i]);
    }

    struct epoll_event events[MAX_EVENTS];
    uint64_t now = st->run_start;
    const uint32_t readable = EPOLLIN | EPOLLERR | EPOLLHUP;
    while (now < stop_at && st->open_count > 0) {
        uint64_t next = st->measuring ? stop_at : measure_at;
        int n = epoll_wait(st->epoll_fd, events, MAX_EVENTS,
                           wait_ms(now, next));
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = &st->conns[events[i].data.u32];
            if (c->open && (events[i].events & readable))
                conn_readable(st, c);
            if (c->open && (events[i].events & EPOLLOUT))
                conn_flush(st, c);
        }
        now = now_ns();
        if (!st->measuring && now >= measure_at) {
            /* Warm-up over: count from here, on the same clock. */
            st->measuring = 1;
            measure_start = now;
            cpu_start = cpu_seconds();
            fprintf(stderr, "loadgen: measuring\n");
        }
    }
    if (!st->measuring) {
        measure_start = now;
        cpu_start = cpu_seconds();
    }
    print_load_result(st, (now - measure_start) / 1e9,
                      cpu_seconds() - cpu_start);
}

/* ------------------------------------------------------------------ */
/* Idle mode                                                            */
/* ------------------------------------------------------------------ */

/* stdin closing is the runner's signal that it has measured.  A regular
 * file cannot be watched by epoll; then only the duration ends the hold. */
static void watch_stdin(struct state *st)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    epoll_ctl(st->epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
}

/* Returns 1 once stdin has reached end of file. */
static int stdin_closed(void)
{
    char buf[256];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static void run_idle(struct state *st)
{
    uint64_t start = now_ns();
    connect_all(st);
    printf("ready\n");
    fflush(stdout);

    watch_stdin(st);
    uint64_t stop_at = now_ns() + seconds_to_ns(st->opt.duration);
    struct epoll_event events[MAX_EVENTS];
    uint64_t now = now_ns();
    int holding = 1;
    while (holding && now < stop_at) {
        int n = epoll_wait(st->epoll_fd, events, MAX_EVENTS,
                           wait_ms(now, stop_at));
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            uint32_t tag = events[i].data.u32;
            if (tag == STDIN_TAG) {
                holding = !stdin_closed();
                continue;
            }
            /* We sent nothing, so any input means the server hung up. */
            conn_fail(st, &st->conns[tag], "closed while idle");
        }
        now = now_ns();
    }
    printf("{\"connections\": %d, \"seconds\": %.3f, \"errors\": %llu}\n",
           st->open_count, (now - start) / 1e9,
           (unsigned long long)st->errors);
    fflush(stdout);
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    struct state st = {0};
    parse_options(argc, argv, &st.opt);
    loopback_address(st.opt.host);     /* refuse early, before any work */
    raise_fd_limit(st.opt.connections);

    /* The hard stop: whatever happens, the process ends. */
    double phases = st.opt.idle ? st.opt.duration
                                : st.opt.warmup + st.opt.duration;
    alarm((unsigned)(connect_budget_s(&st.opt) + phases +
                     HARD_TIMEOUT_SLACK_S));
    signal(SIGPIPE, SIG_IGN);

    st.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (st.epoll_fd < 0)
        die("epoll_create1");
    st.conns = calloc((size_t)st.opt.connections, sizeof *st.conns);
    if (!st.conns)
        die("calloc");

    if (st.opt.idle)
        run_idle(&st);
    else
        run_load(&st);
    return 0;
}
