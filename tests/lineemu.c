/* lineemu: a user-space line emulator for the line lab (this kernel has no netem).
 *
 *     lineemu GW_SIDE_IF CARRIER_SIDE_IF [--slots N] [--slack-us N]
 *
 * Bridges two Ethernet interfaces of the lab's "wire" namespace with AF_PACKET sockets: frames
 * arriving on GW_SIDE_IF go "up" and leave on CARRIER_SIDE_IF, frames arriving on CARRIER_SIDE_IF
 * go "down". One thread per direction, each with its own model of the line:
 *
 *   rate cap    a serialisation model: a frame leaves the queue once the link has sent every byte
 *               before it (rate_bps counts whole Ethernet frames, as tbf on a veth does); a frame
 *               that would wait longer than buffer_ns in the queue is dropped (drop-tail).
 *   loss        random (Bernoulli, `loss`) and bursty (Gilbert-Elliott: ge_p good->bad and ge_r
 *               bad->good per frame, loss probability ge_loss_good / ge_loss_bad in each state),
 *               applied after the frame used the link, as noise on a wire would.
 *   delay       delay_ns plus normal jitter (standard deviation jitter_ns, clipped at 0). Frames
 *               keep their order unless jitter_reorders=1, as jitter from queues does.
 *   reordering  a frame picked with probability `reorder` is held reorder_ns longer, so the
 *               frames behind it overtake it.
 *
 * Held frames wait in a min-heap by release time (ties by arrival) in a slot pool; the thread
 * sleeps in ppoll until the next frame is due or a new one arrives, at real-time priority so other
 * load on the machine does not stretch the delays. With more than one frame held it sleeps up to
 * --slack-us longer, so one wake-up sends several (a NIC's interrupt moderation does the same).
 * Frames are received and sent in batches (recvmmsg/sendmmsg).
 *
 * Offloads stay on at the endpoints (turned off, the endpoints' per-frame cost caps a lab line
 * near 1.5 Gbit/s on this machine): both sockets carry a virtio-net header (PACKET_VNET_HDR), so
 * a frame whose checksum is left to "hardware" is sent on with the same instruction, and a TCP or
 * UDP segmentation-offload super-frame (up to 64 KB) is cut here into the MTU-sized frames the
 * wire carries, each with its own headers, so every model above works on real frames. On the way
 * out, a flow's consecutive segments released together are handed over as one super-frame again,
 * as the receiver's GRO would merge them. GRO is turned off on both interfaces of the wire.
 *
 * Control on stdin, one command a line, one answer line each on stdout:
 *   set up|down key=value ...   -> "ok" or "error: ..."; replaces that direction's whole config
 *                                  (keys left out are 0) and reseeds its random numbers with
 *                                  `seed`, so a configuration replays the same losses
 *   stats                       -> one JSON line of counters per direction
 *   quit (or end of input)      -> final stats, then exit
 * Prints "ready" once both directions run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>
#include <math.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define VNET ((uint32_t)sizeof(struct virtio_net_hdr)) /* in front of every frame, both ways */
#define RX_BUF (VNET + 65536 + 64) /* room for a segmentation-offload super-frame */
#define GSO_UDP_L4 5 /* VIRTIO_NET_HDR_GSO_UDP_L4, missing from older headers */
#define MAX_DELAY_NS 60000000000LL /* a minute: anything longer is a config mistake */

struct cfg {
    double rate_bps; /* 0: no cap */
    int64_t buffer_ns;
    int64_t delay_ns, jitter_ns, reorder_ns;
    int jitter_reorders;
    double loss, ge_p, ge_r, ge_loss_good, ge_loss_bad, reorder;
    uint64_t seed;
};

struct held {
    int64_t t;
    uint64_t seq;
    uint32_t slot, len;
};

/* Counters: written by the direction's thread only, read by the control thread. */
struct counters {
    uint64_t rx, rx_bytes, tx, tx_bytes, drop_loss, drop_queue, drop_pool, drop_bad, drop_tx,
        reordered, held, max_backlog_ns, superframes, merged;
};

struct dir {
    const char *name;
    int rx_fd, tx_fd;
    struct cfg *cfg; /* published by the control thread (atomic pointer) */
    struct cfg *cur;
    unsigned char *pool, *rxbuf;
    size_t slot_size; /* virtio-net header + the largest frame the interfaces' MTU allows */
    uint32_t nslots, nfree, *freelist;
    struct held *heap;
    uint32_t nheap;
    uint64_t seq;
    int64_t free_at, fifo_floor;
    int ge_bad;
    uint64_t rng[4];
    struct counters c;
    uint64_t drop_kernel; /* control thread only: PACKET_STATISTICS resets on read */
};

#define BUMP(field, n) __atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)
#define READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "lineemu: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* --- random numbers: xoshiro256** seeded by splitmix64 (reproducible, fast) ------------------- */
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static void seed_rng(uint64_t *s, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        s[i] = z ^ (z >> 31);
    }
}

static double uniform(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

static double normal(uint64_t *s)
{
    double u1 = uniform(s), u2 = uniform(s);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* --- the heap of held frames ------------------------------------------------------------------ */
static int before(const struct held *a, const struct held *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void heap_push(struct dir *d, struct held h)
{
    uint32_t i = d->nheap++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!before(&h, &d->heap[p]))
            break;
        d->heap[i] = d->heap[p];
        i = p;
    }
    d->heap[i] = h;
}

static struct held heap_pop(struct dir *d)
{
    struct held top = d->heap[0], last = d->heap[--d->nheap];
    uint32_t i = 0, n = d->nheap;
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        const struct held *best = &last;
        if (l < n && before(&d->heap[l], best)) {
            m = l;
            best = &d->heap[l];
        }
        if (r < n && before(&d->heap[r], best))
            m = r;
        if (m == i)
            break;
        d->heap[i] = d->heap[m];
        i = m;
    }
    if (n)
        d->heap[i] = last;
    return top;
}

/* --- the line model: what happens to one frame arriving at `now` ------------------------------ */
static void drop_slot(struct dir *d, uint32_t slot) { d->freelist[d->nfree++] = slot; }

static void admit(struct dir *d, const struct cfg *c, uint32_t slot, uint32_t len, int64_t now)
{
    int64_t t = now;
    if (c->rate_bps > 0) {
        int64_t ser = (int64_t)(len * 8e9 / c->rate_bps);
        int64_t backlog = d->free_at > now ? d->free_at - now : 0;
        if (backlog + ser > c->buffer_ns) {
            BUMP(d->c.drop_queue, 1);
            drop_slot(d, slot);
            return;
        }
        d->free_at = now + backlog + ser;
        t = d->free_at;
        if ((uint64_t)(backlog + ser) > d->c.max_backlog_ns)
            __atomic_store_n(&d->c.max_backlog_ns, (uint64_t)(backlog + ser), __ATOMIC_RELAXED);
    }
    int lost = c->loss > 0 && uniform(d->rng) < c->loss;
    if (c->ge_p > 0) {
        /* Gilbert-Elliott: move between the good and the bad state, then lose by the state. */
        if (d->ge_bad)
            d->ge_bad = !(uniform(d->rng) < c->ge_r);
        else
            d->ge_bad = uniform(d->rng) < c->ge_p;
        double p = d->ge_bad ? c->ge_loss_bad : c->ge_loss_good;
        if (p > 0 && uniform(d->rng) < p)
            lost = 1;
    }
    if (lost) {
        BUMP(d->c.drop_loss, 1);
        drop_slot(d, slot);
        return;
    }
    int64_t delay = c->delay_ns;
    if (c->jitter_ns > 0) {
        delay += llround(normal(d->rng) * (double)c->jitter_ns);
        if (delay < 0)
            delay = 0;
    }
    int64_t release = t + delay;
    if (c->reorder > 0 && uniform(d->rng) < c->reorder) {
        release += c->reorder_ns; /* held back: does not hold back the frames after it */
        BUMP(d->c.reordered, 1);
    } else if (!c->jitter_reorders) {
        if (release < d->fifo_floor)
            release = d->fifo_floor;
        d->fifo_floor = release;
    }
    heap_push(d, (struct held){release, d->seq++, slot, len});
}

/* --- the direction's thread -------------------------------------------------------------------- */
/* --- frames into slots: segmentation offload undone ------------------------------------------ */
static uint32_t sum16(const unsigned char *p, uint32_t n, uint32_t sum)
{
    for (uint32_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

static void put16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static uint32_t get16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* A frame in a fresh slot, or -1 (pool empty: counted). */
static int64_t take_slot(struct dir *d)
{
    if (!d->nfree) {
        BUMP(d->c.drop_pool, 1);
        return -1;
    }
    return d->freelist[--d->nfree];
}

/* Cuts a TCP (or UDP_SEGMENT) super-frame into the frames the wire carries, as the kernel's GSO
 * would: headers copied, IP length/ID/header checksum, TCP sequence and flags (FIN and PSH on
 * the last segment only, CWR on the first only), UDP length set per segment; the L4 checksum is
 * left to the receiver's "hardware" like the original's (pseudo-header sum + NEEDS_CSUM).
 * Returns the number of frames admitted, or -1 when the frame is not one it can cut. */
static int segment(struct dir *d, const struct cfg *c, const struct virtio_net_hdr *vh,
                   const unsigned char *f, uint32_t len, int64_t now)
{
    uint32_t l3 = ETH_HLEN, type = get16(f + 12), l4, proto, hl, mss = vh->gso_size;
    int v4 = type == 0x0800;
    if (!v4 && type != 0x86dd)
        return -1;
    /* A process in the lab can send any bytes with any virtio-net header: check every length. */
    if (v4) {
        if (len < l3 + 20 || f[l3] < 0x45 || f[l3] >= 0x50)
            return -1;
        l4 = l3 + (uint32_t)(f[l3] & 0x0f) * 4;
        proto = f[l3 + 9];
    } else {
        if (len < l3 + 40)
            return -1;
        l4 = l3 + 40;
        proto = f[l3 + 6]; /* extension headers before TCP/UDP: not cut here */
    }
    if (proto == 6 && len >= l4 + 20 && f[l4 + 12] >= 0x50)
        hl = l4 + (uint32_t)(f[l4 + 12] >> 4) * 4;
    else if (proto == 17 && len >= l4 + 8 && (vh->gso_type & 0x7f) == GSO_UDP_L4)
        hl = l4 + 8;
    else
        return -1;
    if (!mss || hl >= len || hl + mss + VNET > d->slot_size)
        return -1;
    uint32_t payload = len - hl, n = 0;
    uint32_t seq = proto == 6 ? (get16(f + l4 + 4) << 16 | get16(f + l4 + 6)) : 0;
    uint32_t id = v4 ? get16(f + l3 + 4) : 0;
    uint32_t ps = 0; /* pseudo-header addresses and protocol */
    ps = v4 ? sum16(f + l3 + 12, 8, proto) : sum16(f + l3 + 8, 32, proto);
    BUMP(d->c.superframes, 1);
    for (uint32_t off = 0; off < payload; off += mss, n++) {
        uint32_t chunk = payload - off < mss ? payload - off : mss, flen = hl + chunk;
        int64_t slot = take_slot(d);
        if (slot < 0)
            continue;
        unsigned char *s = d->pool + (size_t)slot * d->slot_size, *g = s + VNET;
        struct virtio_net_hdr out = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .hdr_len = (uint16_t)hl,
                                     .csum_start = (uint16_t)l4,
                                     .csum_offset = (uint16_t)(proto == 6 ? 16 : 6)};
        memcpy(s, &out, VNET);
        memcpy(g, f, hl);
        memcpy(g + hl, f + hl + off, chunk);
        if (v4) {
            put16(g + l3 + 2, flen - l3);
            put16(g + l3 + 4, (id + n) & 0xffff);
            put16(g + l3 + 10, 0);
            put16(g + l3 + 10, (uint16_t)~fold(sum16(g + l3, l4 - l3, 0)));
        } else {
            put16(g + l3 + 4, flen - l4);
        }
        if (proto == 6) {
            uint32_t sq = seq + off;
            put16(g + l4 + 4, sq >> 16);
            put16(g + l4 + 6, sq & 0xffff);
            if (off + chunk < payload)
                g[l4 + 13] &= (unsigned char)~0x09; /* FIN, PSH: last segment only */
            if (off)
                g[l4 + 13] &= (unsigned char)~0x80; /* CWR: first segment only */
            put16(g + l4 + 16, fold(ps + flen - l4));
        } else {
            put16(g + l4 + 4, flen - l4);
            put16(g + l4 + 6, fold(ps + flen - l4));
        }
        admit(d, c, (uint32_t)slot, flen, now);
    }
    return (int)n;
}

/* --- release: due frames out, a flow's consecutive segments handed over as one ---------------- */
/* A TCP data frame that may join a merged send (what GRO would merge at a real receiver). */
struct tcpseg {
    int ok, v4;
    uint32_t l4, hl, seq, plen;
    unsigned char flags;
};

static struct tcpseg parse_tcp(const unsigned char *f, uint32_t len)
{
    struct tcpseg t = {0};
    uint32_t l3 = ETH_HLEN, type = get16(f + 12);
    if (type == 0x0800 && len >= l3 + 40 && f[l3] >= 0x45 && f[l3] < 0x50 && f[l3 + 9] == 6 &&
        !(get16(f + l3 + 6) & 0x3fff)) {
        t.v4 = 1; /* IPv4 with a sane header length, and not a fragment */
        t.l4 = l3 + (uint32_t)(f[l3] & 0x0f) * 4;
    } else if (type == 0x86dd && len >= l3 + 60 && f[l3 + 6] == 6) {
        t.l4 = l3 + 40;
    } else {
        return t;
    }
    if (len < t.l4 + 20)
        return t;
    t.hl = t.l4 + (uint32_t)(f[t.l4 + 12] >> 4) * 4;
    t.flags = f[t.l4 + 13];
    /* Frames come from whatever runs in the lab: lengths are checked before they are used. */
    if (t.hl < t.l4 + 20 || t.hl > len || t.hl > 192 || (t.flags & ~0x08) != 0x10) /* ACK, maybe PSH */
        return t;
    t.seq = get16(f + t.l4 + 4) << 16 | get16(f + t.l4 + 6);
    t.plen = len - t.hl;
    t.ok = t.plen > 0;
    return t;
}

/* Whether `b` continues `a` in the same flow with identical headers (bar length, ID, checksums,
 * sequence number and flags), as GRO demands, `a` carrying no PSH. */
static int continues(const unsigned char *fa, const struct tcpseg *a, const unsigned char *fb,
                     const struct tcpseg *b)
{
    if (!b->ok || b->hl != a->hl || b->v4 != a->v4 || a->flags != 0x10 || b->seq != a->seq + a->plen)
        return 0;
    uint32_t l3 = ETH_HLEN, l4 = a->l4;
    if (memcmp(fa, fb, l3 + 2)) /* Ethernet, and IPv4 version/TOS or IPv6 version/class/label */
        return 0;
    if (a->v4 ? memcmp(fa + l3 + 6, fb + l3 + 6, 4) || memcmp(fa + l3 + 12, fb + l3 + 12, l4 - l3 - 12)
              : memcmp(fa + l3 + 2, fb + l3 + 2, 2) || memcmp(fa + l3 + 6, fb + l3 + 6, 34))
        return 0;
    return !memcmp(fa + l4, fb + l4, 4) && !memcmp(fa + l4 + 8, fb + l4 + 8, 5) &&
           !memcmp(fa + l4 + 14, fb + l4 + 14, 2) && !memcmp(fa + l4 + 18, fb + l4 + 18, a->hl - l4 - 18);
}

struct txbuf {
    struct mmsghdr m[BATCH];
    struct iovec iov[BATCH * 2]; /* a message's iovecs are consecutive: at most one header each */
    unsigned char hdr[BATCH][VNET + 192];
    uint32_t frames[BATCH];
    uint64_t bytes[BATCH];
};

static unsigned char *frame_of(struct dir *d, const struct held *h)
{
    return d->pool + (size_t)h->slot * d->slot_size + VNET;
}

/* Headers for a merged send of segments first..last (`total` bytes as one frame). */
static void merged_header(unsigned char *h, const unsigned char *f, const struct tcpseg *first,
                          unsigned char last_flags, uint32_t total)
{
    uint32_t l3 = ETH_HLEN, l4 = first->l4, ps;
    struct virtio_net_hdr vh = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                .gso_type = first->v4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6,
                                .hdr_len = (uint16_t)first->hl, .gso_size = (uint16_t)first->plen,
                                .csum_start = (uint16_t)l4, .csum_offset = 16};
    unsigned char *g = h + VNET;
    memcpy(h, &vh, VNET);
    memcpy(g, f, first->hl);
    g[l4 + 13] = last_flags; /* the last segment's PSH */
    if (first->v4) {
        put16(g + l3 + 2, total - l3);
        put16(g + l3 + 10, 0);
        put16(g + l3 + 10, (uint16_t)~fold(sum16(g + l3, l4 - l3, 0)));
        ps = sum16(g + l3 + 12, 8, 6);
    } else {
        put16(g + l3 + 4, total - l4);
        ps = sum16(g + l3 + 8, 32, 6);
    }
    put16(g + l4 + 16, fold(ps + total - l4));
}

/* Sends out[0..n): a run of a flow's consecutive full-sized segments goes as one segmentation-
 * offload frame, so the receiving end gets what its GRO would have built (for a fraction of the
 * CPU; its TCP still counts every segment). Every frame's release time was honoured already. */
static void send_frames(struct dir *d, const struct held *out, int n)
{
    static __thread struct txbuf tx;
    static __thread struct iovec iov[BATCH * 2];
    int nm = 0, ni = 0;
    uint64_t bytes = 0, failed = 0, failed_bytes = 0;
    for (int i = 0; i < n;) {
        unsigned char *fi = frame_of(d, &out[i]), *fp = fi;
        struct tcpseg first = parse_tcp(fi, out[i].len), prev = first;
        uint32_t total = out[i].len;
        int j = i + 1;
        while (first.ok && j < n) {
            unsigned char *fj = frame_of(d, &out[j]);
            struct tcpseg cur = parse_tcp(fj, out[j].len);
            if (prev.plen != first.plen || cur.plen > first.plen || !continues(fp, &prev, fj, &cur) ||
                total + cur.plen - ETH_HLEN > 65535 - 256)
                break;
            total += cur.plen;
            prev = cur;
            fp = fj;
            j++;
        }
        struct mmsghdr *m = &tx.m[nm];
        memset(m, 0, sizeof *m);
        m->msg_hdr.msg_iov = &iov[ni];
        tx.frames[nm] = (uint32_t)(j - i);
        tx.bytes[nm] = 0;
        for (int k = i; k < j; k++)
            tx.bytes[nm] += out[k].len;
        if (j - i == 1) {
            iov[ni++] = (struct iovec){fi - VNET, VNET + out[i].len};
        } else {
            merged_header(tx.hdr[nm], fi, &first, prev.flags, total);
            iov[ni++] = (struct iovec){tx.hdr[nm], VNET + first.hl};
            for (int k = i; k < j; k++)
                iov[ni++] = (struct iovec){frame_of(d, &out[k]) + first.hl, out[k].len - first.hl};
        }
        m->msg_hdr.msg_iovlen = (size_t)(&iov[ni] - m->msg_hdr.msg_iov);
        nm++;
        i = j;
    }
    for (int i = 0; i < nm;) {
        int r = sendmmsg(d->tx_fd, tx.m + i, (unsigned)(nm - i), 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            failed += tx.frames[i]; /* e.g. a frame above the outgoing MTU: drop it, go on */
            failed_bytes += tx.bytes[i];
            i++;
            continue;
        }
        i += r;
    }
    for (int i = 0; i < n; i++) {
        bytes += out[i].len;
        drop_slot(d, out[i].slot);
    }
    BUMP(d->c.tx, (uint64_t)n - failed);
    BUMP(d->c.tx_bytes, bytes - failed_bytes);
    BUMP(d->c.drop_tx, failed);
    BUMP(d->c.merged, (uint64_t)(n - nm));
}

static void release_due(struct dir *d, int64_t now)
{
    struct held out[BATCH];
    int n = 0;
    while (d->nheap && d->heap[0].t <= now) {
        out[n++] = heap_pop(d);
        if (n == BATCH) {
            send_frames(d, out, n);
            n = 0;
        }
    }
    if (n)
        send_frames(d, out, n);
    __atomic_store_n(&d->c.held, d->nheap, __ATOMIC_RELAXED);
}

/* The configuration for frames received from now on: one set (and answered "ok") before a frame
 * was sent applies to that frame. A new configuration replays from its own seed. */
static const struct cfg *current_cfg(struct dir *d)
{
    struct cfg *c = __atomic_load_n(&d->cfg, __ATOMIC_ACQUIRE);
    if (c != d->cur) {
        d->cur = c;
        seed_rng(d->rng, c->seed);
        d->ge_bad = 0;
    }
    return c;
}

/* Receives one batch; returns the number of frames, 0 when none are waiting. */
static int receive(struct dir *d)
{
    struct mmsghdr m[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = d->rxbuf + (size_t)i * RX_BUF;
        iov[i].iov_len = RX_BUF;
        memset(&m[i], 0, sizeof m[i]);
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    int r = recvmmsg(d->rx_fd, m, BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (r <= 0)
        return 0;
    const struct cfg *c = current_cfg(d);
    int64_t now = mono_ns();
    uint64_t bytes = 0;
    for (int i = 0; i < r; i++) {
        unsigned char *buf = iov[i].iov_base;
        uint32_t len = m[i].msg_len; /* MSG_TRUNC: the real length, even if it did not fit */
        struct virtio_net_hdr vh;
        if (len < VNET + ETH_HLEN || len > RX_BUF) {
            BUMP(d->c.drop_bad, 1);
            continue;
        }
        memcpy(&vh, buf, VNET);
        len -= VNET;
        bytes += len;
        if (vh.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
            if (segment(d, c, &vh, buf + VNET, len, now) < 0)
                BUMP(d->c.drop_bad, 1);
            continue;
        }
        if (len + VNET > d->slot_size) {
            BUMP(d->c.drop_bad, 1);
            continue;
        }
        int64_t slot = take_slot(d);
        if (slot < 0)
            continue;
        vh.flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM; /* "data valid" means nothing on the way out */
        unsigned char *s = d->pool + (size_t)slot * d->slot_size;
        memcpy(s, &vh, VNET);
        memcpy(s + VNET, buf + VNET, len);
        admit(d, c, (uint32_t)slot, len, now);
    }
    BUMP(d->c.rx, (uint64_t)r);
    BUMP(d->c.rx_bytes, bytes);
    return r;
}

static int64_t slack_ns = 100000; /* sleep this much past the next release: fewer wake-ups */

static void *run(void *arg)
{
    struct dir *d = arg;
    struct pollfd p = {.fd = d->rx_fd, .events = POLLIN};
    /* A wire does not wait for the CPU: real-time priority keeps the delays true while other
     * tests load the machine (best effort; the kernel's RT throttling still bounds it). */
    struct sched_param sp = {.sched_priority = 10};
    pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    for (;;) {
        release_due(d, mono_ns());
        if (receive(d) > 0)
            continue;
        int64_t wait = d->nheap ? d->heap[0].t - mono_ns() : -1;
        if (d->nheap && wait <= 0)
            continue;
        if (d->nheap > 1) /* a lone frame (a ping on an idle line) leaves on time */
            wait += slack_ns;
        struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
        p.revents = 0;
        ppoll(&p, 1, d->nheap ? &ts : NULL, NULL);
        if (p.revents & (POLLERR | POLLNVAL)) {
            /* e.g. the interface went down: take the error, and never spin at real-time priority */
            int err;
            socklen_t len = sizeof err;
            getsockopt(d->rx_fd, SOL_SOCKET, SO_ERROR, &err, &len);
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
    }
    return NULL;
}

/* --- set-up ------------------------------------------------------------------------------------ */
static void ethtool_off(int fd, const char *ifname, uint32_t cmd)
{
    struct ethtool_value v = {.cmd = cmd, .data = 0};
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    ifr.ifr_data = (char *)&v;
    ioctl(fd, SIOCETHTOOL, &ifr); /* best effort: not every device has every feature */
}

static int if_mtu(int fd, const char *ifname)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (ioctl(fd, SIOCGIFMTU, &ifr) < 0)
        die(ifname);
    return ifr.ifr_mtu;
}

static int packet_socket(const char *ifname, int receiving)
{
    int one = 1, fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: nothing queued before bind */
    if (fd < 0)
        die("socket(AF_PACKET)");
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0)
        die("PACKET_VNET_HDR");
    struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(ifname)};
    if (!a.sll_ifindex)
        die(ifname);
    if (receiving) {
        int buf = 32 << 20;
        a.sll_protocol = htons(ETH_P_ALL);
        if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0)
            die("PACKET_IGNORE_OUTGOING");
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0)
            die("SO_RCVBUFFORCE");
        struct packet_mreq mr = {.mr_ifindex = a.sll_ifindex, .mr_type = PACKET_MR_PROMISC};
        if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
            die("PACKET_MR_PROMISC");
    } else {
        int buf = 8 << 20;
        setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0)
            die("SO_SNDBUFFORCE");
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind");
    return fd;
}

static void dir_init(struct dir *d, const char *name, const char *in, const char *out,
                     uint32_t nslots, size_t slot_size, struct cfg *initial)
{
    d->name = name;
    d->rx_fd = packet_socket(in, 1);
    d->tx_fd = packet_socket(out, 0);
    d->nslots = nslots;
    d->slot_size = slot_size;
    /* Reserved, not committed: pages are touched only as deep as the line's queue gets. */
    d->pool = mmap(NULL, (size_t)nslots * slot_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    d->freelist = malloc(nslots * sizeof *d->freelist);
    d->heap = malloc(nslots * sizeof *d->heap);
    d->rxbuf = malloc((size_t)BATCH * RX_BUF);
    if (d->pool == MAP_FAILED || !d->freelist || !d->heap || !d->rxbuf)
        die("allocating the slot pool");
    for (uint32_t i = 0; i < nslots; i++) /* slot 0 on top: the hot slots get reused first */
        d->freelist[i] = nslots - 1 - i;
    d->nfree = nslots;
    d->cfg = initial;
}

/* --- control ----------------------------------------------------------------------------------- */
static int parse_double(const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int parse_ns(const char *v, int64_t *out)
{
    double x;
    if (parse_double(v, 0, (double)MAX_DELAY_NS, &x))
        return -1;
    *out = (int64_t)x;
    return 0;
}

/* Parses "key=value ..." into a fresh config; on error writes the reason to `err`. */
static struct cfg *parse_cfg(char *args, char *err, size_t errlen)
{
    struct cfg *c = calloc(1, sizeof *c);
    char *save = NULL;
    if (!c)
        die("calloc");
    c->ge_loss_bad = 1.0;
    for (char *tok = strtok_r(args, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(err, errlen, "expected key=value, got '%.40s'", tok);
            goto bad;
        }
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        double x;
        int ok;
        if (!strcmp(k, "rate_bps"))
            ok = !parse_double(v, 0, 1e12, &c->rate_bps);
        else if (!strcmp(k, "buffer_ns"))
            ok = !parse_ns(v, &c->buffer_ns);
        else if (!strcmp(k, "delay_ns"))
            ok = !parse_ns(v, &c->delay_ns);
        else if (!strcmp(k, "jitter_ns"))
            ok = !parse_ns(v, &c->jitter_ns);
        else if (!strcmp(k, "reorder_ns"))
            ok = !parse_ns(v, &c->reorder_ns);
        else if (!strcmp(k, "jitter_reorders"))
            ok = !parse_double(v, 0, 1, &x) && (x == 0 || x == 1) && ((c->jitter_reorders = (int)x), 1);
        else if (!strcmp(k, "loss"))
            ok = !parse_double(v, 0, 1, &c->loss);
        else if (!strcmp(k, "ge_p"))
            ok = !parse_double(v, 0, 1, &c->ge_p);
        else if (!strcmp(k, "ge_r"))
            ok = !parse_double(v, 0, 1, &c->ge_r);
        else if (!strcmp(k, "ge_loss_good"))
            ok = !parse_double(v, 0, 1, &c->ge_loss_good);
        else if (!strcmp(k, "ge_loss_bad"))
            ok = !parse_double(v, 0, 1, &c->ge_loss_bad);
        else if (!strcmp(k, "reorder"))
            ok = !parse_double(v, 0, 1, &c->reorder);
        else if (!strcmp(k, "seed")) {
            char *end;
            errno = 0;
            c->seed = strtoull(v, &end, 10);
            ok = !errno && end != v && !*end;
        } else {
            snprintf(err, errlen, "unknown key '%.40s'", k);
            goto bad;
        }
        if (!ok) {
            snprintf(err, errlen, "bad value for %s: '%.40s'", k, v);
            goto bad;
        }
    }
    if (c->rate_bps > 0 && c->buffer_ns <= 0) {
        snprintf(err, errlen, "rate_bps needs buffer_ns > 0");
        goto bad;
    }
    if (c->ge_p > 0 && c->ge_r <= 0) {
        snprintf(err, errlen, "ge_p needs ge_r > 0 (the bad state must end)");
        goto bad;
    }
    if (c->reorder > 0 && c->reorder_ns <= 0) {
        snprintf(err, errlen, "reorder needs reorder_ns > 0");
        goto bad;
    }
    return c;
bad:
    free(c);
    return NULL;
}

static void print_stats(struct dir *dirs)
{
    printf("{");
    for (int i = 0; i < 2; i++) {
        struct dir *d = &dirs[i];
        struct tpacket_stats st;
        socklen_t len = sizeof st;
        if (!getsockopt(d->rx_fd, SOL_PACKET, PACKET_STATISTICS, &st, &len))
            d->drop_kernel += st.tp_drops;
        printf("%s\"%s\": {\"rx\": %lu, \"rx_bytes\": %lu, \"tx\": %lu, \"tx_bytes\": %lu, "
               "\"drop_loss\": %lu, \"drop_queue\": %lu, \"drop_pool\": %lu, \"drop_bad\": %lu, "
               "\"drop_tx\": %lu, \"drop_kernel\": %lu, \"reordered\": %lu, \"held\": %lu, "
               "\"max_backlog_ns\": %lu, \"superframes\": %lu, \"merged\": %lu}",
               i ? ", " : "", d->name, READ(d->c.rx), READ(d->c.rx_bytes), READ(d->c.tx),
               READ(d->c.tx_bytes), READ(d->c.drop_loss), READ(d->c.drop_queue),
               READ(d->c.drop_pool), READ(d->c.drop_bad), READ(d->c.drop_tx), d->drop_kernel,
               READ(d->c.reordered), READ(d->c.held), READ(d->c.max_backlog_ns),
               READ(d->c.superframes), READ(d->c.merged));
    }
    printf("}\n");
    fflush(stdout);
}

static int usage(void)
{
    fprintf(stderr, "usage: lineemu GW_SIDE_IF CARRIER_SIDE_IF [--slots 64..4194304] [--slack-us 0..1000]\n");
    return 2;
}

int main(int argc, char **argv)
{
    uint32_t nslots = 65536;
    if (argc < 3 || argc % 2 == 0)
        return usage();
    for (int i = 3; i < argc; i += 2) {
        char *end;
        unsigned long n = strtoul(argv[i + 1], &end, 10);
        if (*end || end == argv[i + 1])
            return usage();
        if (!strcmp(argv[i], "--slots") && n >= BATCH && n <= (1u << 22))
            nslots = (uint32_t)n;
        else if (!strcmp(argv[i], "--slack-us") && n <= 1000)
            slack_ns = (int64_t)n * 1000;
        else
            return usage();
    }
    const char *gw = argv[1], *carrier = argv[2];
    int ctl = socket(AF_INET, SOCK_DGRAM, 0);
    if (ctl < 0)
        die("socket");
    int mtu = if_mtu(ctl, gw) > if_mtu(ctl, carrier) ? if_mtu(ctl, gw) : if_mtu(ctl, carrier);
    size_t slot_size = ((size_t)VNET + mtu + ETH_HLEN + 4 /* VLAN tag */ + 63) & ~(size_t)63;
    for (int i = 0; i < 2; i++) /* GRO would hand the socket merged frames */
        ethtool_off(ctl, i ? carrier : gw, ETHTOOL_SGRO);
    close(ctl);
    prctl(PR_SET_TIMERSLACK, 1000UL); /* inherited by the threads: wake-ups within a microsecond */

    static struct dir dirs[2];
    struct cfg *clean = calloc(1, sizeof *clean);
    dir_init(&dirs[0], "up", gw, carrier, nslots, slot_size, clean);
    dir_init(&dirs[1], "down", carrier, gw, nslots, slot_size, clean);
    for (int i = 0; i < 2; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, run, &dirs[i]))
            die("pthread_create");
    }
    printf("ready\n");
    fflush(stdout);

    char line[4096], err[160];
    while (fgets(line, sizeof line, stdin)) {
        char *save = NULL, *cmd = strtok_r(line, " \t\n", &save);
        if (!cmd)
            continue;
        if (!strcmp(cmd, "quit"))
            break;
        if (!strcmp(cmd, "stats")) {
            print_stats(dirs);
        } else if (!strcmp(cmd, "set")) {
            char *which = strtok_r(NULL, " \t\n", &save);
            int i = which && !strcmp(which, "up") ? 0 : which && !strcmp(which, "down") ? 1 : -1;
            struct cfg *c = i < 0 ? NULL : parse_cfg(save ? save : (char *)"", err, sizeof err);
            if (i < 0)
                printf("error: set needs a direction, up or down\n");
            else if (!c)
                printf("error: %s\n", err);
            else { /* the old config stays allocated: the thread may still be reading it */
                __atomic_store_n(&dirs[i].cfg, c, __ATOMIC_RELEASE);
                printf("ok\n");
            }
            fflush(stdout);
        } else {
            printf("error: unknown command '%.40s'\n", cmd);
            fflush(stdout);
        }
    }
    print_stats(dirs);
    return 0;
}
