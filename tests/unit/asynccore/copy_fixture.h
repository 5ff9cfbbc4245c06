/* Fixtures shared by the copy and splice tests: deterministic bytes with a
 * running checksum, a stream pair that drains slowly, a peer thread that
 * sends or receives a checksummed stream, a peer that resets, and the
 * bidirectional half-close case run in each copy mode. Include after
 * io_fixture.h. */
#ifndef COPY_FIXTURE_H
#define COPY_FIXTURE_H


/* Deterministic bytes and a running checksum. */
static unsigned char pattern(uint64_t i, unsigned seed)
{
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull + seed;
    return (unsigned char)(x >> 56);
}

static uint64_t sum_add(uint64_t sum, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ p[i]) * 0x100000001b3ull;
    return sum;
}

/* ---- connected streams ---- */

/* A stream_pair that drains slowly: small send buffer on our side and small
 * receive buffer on the peer's, so a copy into it keeps a remainder. */
static void lagging_pair(struct ac_worker *w, struct ac_stream *s, int *peer, int size)
{
    int ours;

    tcp_pair(&ours, peer, size);
    assert_int_equal(setsockopt(ours, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
    assert_int_equal(ac_socket_stream_open(s, w, ours), 0);
}

/* ---- peer threads ---- */

/* Writes `len` pattern bytes (in chunks) then optionally shuts down, then
 * optionally reads until EOF. */
struct peer {
    pthread_t tid;
    int fd;
    unsigned seed;
    size_t send_len;
    long delay_before_read_ms;
    bool shut_after_send;
    bool read_first;      /* read until EOF first, then send */
    bool read_after;      /* after sending, read until EOF */
    uint64_t sent_sum, recv_sum;
    size_t recv_len;
    atomic_bool done_reading;
    atomic_bool shut_now; /* for the idle test: shutdown when set */
};

static void peer_send(struct peer *p)
{
    unsigned char buf[8192];
    size_t off = 0;
    uint64_t sum = 0xcbf29ce484222325ull;

    while (off < p->send_len) {
        size_t n = p->send_len - off < sizeof(buf) ? p->send_len - off : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(off + i, p->seed);
        size_t w = 0;
        while (w < n) {
            ssize_t r = send(p->fd, buf + w, n - w, MSG_NOSIGNAL);
            if (r <= 0)
                return;
            w += (size_t)r;
        }
        sum = sum_add(sum, buf, n);
        off += n;
    }
    p->sent_sum = sum;
    if (p->shut_after_send)
        shutdown(p->fd, SHUT_WR);
}

static void peer_recv(struct peer *p)
{
    unsigned char buf[8192];
    uint64_t sum = 0xcbf29ce484222325ull;

    sleep_ms(p->delay_before_read_ms);
    for (;;) {
        ssize_t n = read(p->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        sum = sum_add(sum, buf, (size_t)n);
        p->recv_len += (size_t)n;
    }
    p->recv_sum = sum;
    atomic_store(&p->done_reading, true);
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;

    if (p->read_first)
        peer_recv(p);
    if (p->send_len > 0)
        peer_send(p);
    if (p->read_after)
        peer_recv(p);
    return NULL;
}

static void peer_start(struct peer *p)
{
    atomic_init(&p->done_reading, false);
    atomic_init(&p->shut_now, false);
    assert_int_equal(pthread_create(&p->tid, NULL, peer_main, p), 0);
}

static uint64_t expected_sum(size_t len, unsigned seed)
{
    uint64_t sum = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = pattern(i, seed);
        sum = sum_add(sum, &b, 1);
    }
    return sum;
}

/* A peer that sends `chunks` x 4 KiB, then resets its connection (SO_LINGER 0). */
struct resetter {
    pthread_t tid;
    int fd;
    int chunks;
};

static inline void *resetter_main(void *arg)
{
    struct resetter *r = arg;
    struct linger lg = {1, 0};
    unsigned char buf[4096];

    memset(buf, 'r', sizeof(buf));
    for (int i = 0; i < r->chunks; i++)
        if (send(r->fd, buf, sizeof(buf), MSG_NOSIGNAL) <= 0)
            break;
    sleep_ms(50);
    setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(r->fd);
    return NULL;
}

enum copy_mode { COPY_BUFFER, COPY_SPLICE, COPY_SPLICE_AUTO };

/* Both directions at once, each half-closed in turn: a's peer sends 8 MiB
 * and shuts down; b's peer reads it all (EOF) and only then answers 1 MiB and
 * shuts down; a's peer reads the answer. Every byte arrives, no buffer and no
 * pipe is left held. */
static inline void bidi_half_close_each_way(struct ac_worker *w, enum copy_mode mode)
{
    struct ac_stream sa, sb;
    struct ac_copy_bidi bc;
    int pa, pb;

    stream_pair(w, &sa, &pa, 16384);
    stream_pair(w, &sb, &pb, 16384);

    struct peer pa_ = {.fd = pa, .seed = 2, .send_len = 8 * MIB, .shut_after_send = true,
                       .read_after = true};
    struct peer pb_ = {.fd = pb, .seed = 3, .send_len = 1 * MIB, .shut_after_send = true,
                       .read_first = true};
    peer_start(&pa_);
    peer_start(&pb_);

    ac_copy_bidi_init(&bc, &sa, &sb, 4096);
    if (mode == COPY_SPLICE_AUTO)
        assert_true(ac_copy_bidi_splice_auto(&bc));
    else if (mode == COPY_SPLICE)
        assert_true(ac_copy_bidi_use_splice(&bc));
    assert_int_equal(ac_block_on(w, &bc.base), 0);
    assert_int_equal(bc.err, 0);
    assert_true(bc.ab_done && bc.ba_done);
    assert_int_equal(bc.ab.bytes, 8 * MIB);
    assert_int_equal(bc.ba.bytes, 1 * MIB);
    assert_null(bc.ab.buf);
    assert_null(bc.ba.buf);
    assert_int_equal(ac_worker_pipe_pool(w)->n_out, 0);
    ac_future_drop(&bc.base);

    pthread_join(pa_.tid, NULL);
    pthread_join(pb_.tid, NULL);
    assert_int_equal(pb_.recv_len, 8 * MIB);
    assert_true(pb_.recv_sum == expected_sum(8 * MIB, 2));
    assert_int_equal(pa_.recv_len, 1 * MIB);
    assert_true(pa_.recv_sum == expected_sum(1 * MIB, 3));
    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

/* After a half-close towards b, b's peer can still write, and it arrives. */
static inline void assert_still_reads_back(struct ac_worker *w, struct ac_stream *sb, int pb)
{
    struct ac_read_exact re;
    char buf[4];

    assert_int_equal(write(pb, "back", 4), 4);
    ac_read_exact_init(&re, sb, buf, 4);
    assert_int_equal(ac_block_on(w, &re.base), 0);
    assert_int_equal(re.err, 0);
    assert_memory_equal(buf, "back", 4);
    ac_future_drop(&re.base);
}

/* Bulk, then a pause, then small messages: sends `bulk` pattern bytes, then
 * `nsmall` messages of `small` bytes 10 ms apart, then shuts down. */
struct bulk_then_small {
    pthread_t tid;
    int fd;
    size_t bulk, small;
    unsigned nsmall;
    size_t off; /* bytes already sent before the thread starts */
    unsigned seed;
};

static inline void *bulk_then_small_main(void *arg)
{
    struct bulk_then_small *b = arg;
    unsigned char buf[8192];
    size_t off = b->off, total = b->bulk + b->small * b->nsmall;

    while (off < total) {
        size_t n = off < b->bulk ? b->bulk - off : b->small;
        if (n > sizeof(buf))
            n = sizeof(buf);
        if (off == b->bulk)
            sleep_ms(100); /* the copy finds the source empty, in splice mode */
        else if (off > b->bulk)
            sleep_ms(10);
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(off + i, b->seed);
        if (send(b->fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
            break;
        off += n;
    }
    shutdown(b->fd, SHUT_WR);
    return NULL;
}


#endif
