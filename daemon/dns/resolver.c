/* ferryd: the asynchronous resolver (see resolver.h).
 *
 * The driver is one future: each poll it (1) lets c-ares read and write
 * every socket the reactor reports ready (ares_process_fd), (2) clears a
 * direction's readiness only once the socket has nothing more for it, since
 * registrations are edge-triggered and c-ares may not drain a socket in one
 * call, (3) runs c-ares' timeouts and the scheduling hook when due, and (4)
 * sleeps on the timer wheel until the earlier of c-ares' next timeout and the
 * hook's next due time. c-ares tells us about its sockets through the
 * sock_state callback; we register and deregister them with the reactor
 * there.
 */
#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"
#include "dns/resolver.h"
#include "log/log.h"

struct dns_sock {
    struct dns_sock *next;
    int fd;
    bool want_read, want_write;
    struct ac_io io;
};

/* "IP:PORT,IP:PORT" of `resolvers` ("": /etc/resolv.conf). */
#define DNS_SERVERS_MAX (FERRY_RESOLVERS_MAX * 66)

struct ferry_dns {
    struct ac_future base;
    struct ac_worker *w;
    ares_channel ch;
    bool channel_live;
    char servers[DNS_SERVERS_MAX]; /* the channel's, as configured */
    struct dns_sock *socks;
    struct ac_sleep timer;
    struct ac_waker waker;   /* the driver's, to kick it */
    uint64_t (*tick)(void *arg, uint64_t now_ms);
    void *tick_arg;
    uint64_t tick_due;
};

/* ---- c-ares socket bookkeeping ---- */

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct ferry_dns *dns = data;
    struct dns_sock **pp = &dns->socks;
    while (*pp && (*pp)->fd != fd)
        pp = &(*pp)->next;
    if (!readable && !writable) {
        if (*pp) {
            struct dns_sock *s = *pp;
            *pp = s->next;
            ac_io_deregister(&s->io);
            free(s);
        }
        return;
    }
    if (!*pp) {
        struct dns_sock *s = calloc(1, sizeof(*s));
        if (!s)
            return; /* the query times out; nothing else breaks */
        s->fd = fd;
        if (ac_io_register(dns->w, fd, 0, &s->io) != 0) {
            free(s);
            return;
        }
        s->next = dns->socks;
        dns->socks = s;
        pp = &dns->socks;
    }
    (*pp)->want_read = readable;
    (*pp)->want_write = writable;
    ac_waker_wake_by_ref(&dns->waker);
}

/* ---- the driver ---- */

struct ready_fd {
    int fd;
    bool r, w;
    struct ac_ready_event er, ew;
};

#define DNS_ROUNDS 16
#define DNS_BATCH 32

/* Clears what the socket no longer has (poll(2) with no wait). */
static void settle(struct ferry_dns *dns, const struct ready_fd *rf)
{
    struct dns_sock *s = dns->socks;
    while (s && s->fd != rf->fd)
        s = s->next;
    if (!s)
        return; /* c-ares closed it */
    struct pollfd p = {.fd = rf->fd, .events = POLLIN | POLLOUT};
    if (poll(&p, 1, 0) < 0)
        p.revents = 0;
    if (rf->r && !(p.revents & (POLLIN | POLLHUP | POLLERR)))
        ac_io_clear_ready(&s->io, AC_DIR_READ, rf->er);
    if (rf->w && !(p.revents & (POLLOUT | POLLERR)))
        ac_io_clear_ready(&s->io, AC_DIR_WRITE, rf->ew);
}

/* Processes ready sockets; true when something was ready (poll again). */
static bool process_sockets(struct ferry_dns *dns, struct ac_context *cx)
{
    struct ready_fd rf[DNS_BATCH];
    size_t n = 0;
    for (struct dns_sock *s = dns->socks; s && n < DNS_BATCH; s = s->next) {
        struct ready_fd r = {.fd = s->fd};
        r.r = s->want_read && ac_io_poll_ready(&s->io, cx, AC_DIR_READ, &r.er) == AC_READY;
        r.w = s->want_write && ac_io_poll_ready(&s->io, cx, AC_DIR_WRITE, &r.ew) == AC_READY;
        if (r.r || r.w)
            rf[n++] = r;
    }
    for (size_t i = 0; i < n; i++) {
        ares_process_fd(dns->ch, rf[i].r ? rf[i].fd : ARES_SOCKET_BAD,
                        rf[i].w ? rf[i].fd : ARES_SOCKET_BAD);
        settle(dns, &rf[i]);
    }
    return n > 0;
}

static uint64_t next_deadline(struct ferry_dns *dns, uint64_t now)
{
    uint64_t due = dns->tick ? dns->tick_due : UINT64_MAX;
    struct timeval tv, *tvp = ares_timeout(dns->ch, NULL, &tv);
    if (tvp) {
        uint64_t t = now + (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
        if (t < due)
            due = t;
    }
    return due;
}

static ac_poll_t dns_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_dns *dns = (struct ferry_dns *)f;
    if (!ac_waker_is_set(&dns->waker))
        dns->waker = ac_waker_clone(cx->waker);
    for (int round = 0; round < DNS_ROUNDS; round++) {
        bool busy = process_sockets(dns, cx);
        uint64_t now = ac_clock_now_ms();
        struct timeval tv, *tvp = ares_timeout(dns->ch, NULL, &tv);
        if (tvp && tvp->tv_sec == 0 && tvp->tv_usec == 0) {
            ares_process_fd(dns->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            busy = true;
        }
        if (dns->tick && dns->tick_due <= now) {
            dns->tick_due = dns->tick(dns->tick_arg, now);
            busy = true;
        }
        if (busy)
            continue;
        uint64_t due = next_deadline(dns, now);
        if (due == UINT64_MAX)
            return AC_PENDING; /* a socket or a kick wakes us */
        ac_sleep_reset(&dns->timer, due);
        if (ac_future_poll(&dns->timer.base, cx) == AC_PENDING)
            return AC_PENDING;
    }
    ac_waker_wake_by_ref(cx->waker); /* busy: let other tasks run first */
    return AC_PENDING;
}

static void dns_drop(struct ac_future *f)
{
    struct ferry_dns *dns = (struct ferry_dns *)f;
    if (dns->channel_live) {
        /* Pending callbacks run now with ARES_EDESTRUCTION. */
        dns->channel_live = false;
        ares_destroy(dns->ch);
    }
    while (dns->socks) {
        struct dns_sock *s = dns->socks;
        dns->socks = s->next;
        ac_io_deregister(&s->io);
        free(s);
    }
    ac_future_drop(&dns->timer.base);
    ac_waker_drop(&dns->waker);
    if (dns->tick)
        dns->tick(dns->tick_arg, UINT64_MAX); /* the hook's owner lets go */
    dns->tick = NULL;
}

static void dns_dealloc(struct ac_future *f)
{
    free(f);
}

static const struct ac_future_vtable dns_vt = {dns_poll, dns_drop};

static void servers_csv(const struct ferry_global *gl, char *csv, size_t cap)
{
    size_t off = 0;
    csv[0] = '\0';
    for (size_t i = 0; i < gl->nresolvers && off < cap; i++)
        off += (size_t)snprintf(csv + off, cap - off, "%s%s", i ? "," : "", gl->resolvers[i]);
}

/* A channel asking `csv` ("": the servers of /etc/resolv.conf, read now). */
static int channel_new(struct ferry_dns *dns, const char *csv, ares_channel *out)
{
    struct ares_options o = {0};
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = dns;
    o.timeout = 1000; /* ms per try (ARES_OPT_TIMEOUTMS) */
    o.tries = 2;
    /* An answer too large for UDP is retried over TCP (c-ares caps a reply at
     * 64 KiB); no EDNS, so a UDP reply is at most 512 bytes. */
    int rc = ares_init_options(out, &o,
                               ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS)
        return rc;
    if (csv[0] && ares_set_servers_ports_csv(*out, csv) != ARES_SUCCESS) {
        ares_destroy(*out);
        return ARES_EBADSTR;
    }
    return ARES_SUCCESS;
}

/* New resolvers get a new channel: c-ares refuses to change the servers of
 * a channel with queries in flight, so changing them in place could keep
 * the old ones. The old channel's queries are cancelled (their callbacks
 * see ARES_ECANCELLED, a failed lookup) and it is destroyed, closing its
 * sockets; every lookup from now on asks the new servers. */
int ferry_dns_configure(struct ferry_dns *dns, const struct ferry_global *gl)
{
    char csv[DNS_SERVERS_MAX];
    servers_csv(gl, csv, sizeof(csv));
    if (strcmp(csv, dns->servers) == 0)
        return 0;
    ares_channel ch;
    if (channel_new(dns, csv, &ch) != ARES_SUCCESS)
        return -EINVAL;
    ares_channel old = dns->ch;
    dns->ch = ch;
    snprintf(dns->servers, sizeof(dns->servers), "%s", csv);
    ares_cancel(old);
    ares_destroy(old);
    ferry_dns_kick(dns);
    return 0;
}

struct ferry_dns *ferry_dns_start(struct ac_worker *w, const struct ferry_global *gl, int *err)
{
    struct ferry_dns *dns = calloc(1, sizeof(*dns));
    if (!dns) {
        *err = -ENOMEM;
        return NULL;
    }
    dns->base.vt = &dns_vt;
    dns->w = w;
    ac_sleep_init_deadline(&dns->timer, UINT64_MAX);
    servers_csv(gl, dns->servers, sizeof(dns->servers));
    int rc = channel_new(dns, dns->servers, &dns->ch);
    if (rc != ARES_SUCCESS) {
        free(dns);
        *err = rc == ARES_EBADSTR ? -EINVAL : rc;
        return NULL;
    }
    dns->channel_live = true;
    rc = ac_spawn(w, &dns->base, dns_dealloc);
    if (rc < 0) {
        *err = rc; /* the task dropped and freed it */
        return NULL;
    }
    return dns;
}

void ferry_dns_kick(struct ferry_dns *dns)
{
    ac_waker_wake_by_ref(&dns->waker);
}

uint64_t ferry_dns_now_ms(struct ferry_dns *dns)
{
    (void)dns;
    return ac_clock_now_ms();
}

void ferry_dns_set_tick(struct ferry_dns *dns, uint64_t (*tick)(void *arg, uint64_t now_ms),
                        void *arg, uint64_t due_ms)
{
    dns->tick = tick;
    dns->tick_arg = arg;
    dns->tick_due = due_ms;
    ferry_dns_kick(dns);
}

void ferry_dns_tick_at(struct ferry_dns *dns, uint64_t due_ms)
{
    if (due_ms < dns->tick_due) {
        dns->tick_due = due_ms;
        ferry_dns_kick(dns);
    }
}

/* ---- answers ---- */

static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Skips a (possibly compressed) name; returns its length or -1. */
static int skip_name(const unsigned char *abuf, int alen, const unsigned char *p)
{
    const unsigned char *start = p;
    for (int labels = 0; labels < 128; labels++) {
        if (p >= abuf + alen)
            return -1;
        if ((*p & 0xc0) == 0xc0)
            return p + 2 <= abuf + alen ? (int)(p + 2 - start) : -1;
        if (*p & 0xc0)
            return -1;
        if (*p == 0)
            return (int)(p + 1 - start);
        p += 1 + *p;
    }
    return -1;
}

uint32_t ferry_dns_reply_min_ttl(const unsigned char *abuf, int alen)
{
    if (!abuf || alen < 12)
        return UINT32_MAX;
    unsigned qd = get16(abuf + 4), an = get16(abuf + 6);
    const unsigned char *p = abuf + 12, *end = abuf + alen;
    for (unsigned i = 0; i < qd; i++) {
        int n = skip_name(abuf, alen, p);
        if (n < 0 || p + n + 4 > end)
            return UINT32_MAX;
        p += n + 4;
    }
    uint32_t min = UINT32_MAX;
    for (unsigned i = 0; i < an; i++) {
        int n = skip_name(abuf, alen, p);
        if (n < 0 || p + n + 10 > end)
            return min;
        p += n;
        uint32_t ttl = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        uint16_t rdlen = get16(p + 8);
        if (ttl < min)
            min = ttl;
        p += 10 + rdlen;
        if (p > end)
            return min;
    }
    return min;
}

/* The order records are kept and cut in: family, address, port. */
static int rec_cmp(const struct ferry_dns_record *a, const struct ferry_dns_record *b)
{
    int fa = a->sa.ss_family, fb = b->sa.ss_family;
    if (fa != fb)
        return fa < fb ? -1 : 1;
    int c = fa == AF_INET
                ? memcmp(&((const struct sockaddr_in *)&a->sa)->sin_addr,
                         &((const struct sockaddr_in *)&b->sa)->sin_addr, 4)
                : memcmp(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr,
                         &((const struct sockaddr_in6 *)&b->sa)->sin6_addr, 16);
    if (c != 0)
        return c;
    return a->port < b->port ? -1 : a->port > b->port;
}

static int rec_qsort_cmp(const void *a, const void *b) { return rec_cmp(a, b); }

/* Index of the greatest of rec[0..n) (n > 0). */
static size_t rec_max(const struct ferry_dns_record *rec, size_t n)
{
    size_t m = 0;
    for (size_t i = 1; i < n; i++)
        if (rec_cmp(&rec[i], &rec[m]) > 0)
            m = i;
    return m;
}

/* Collects addresses of an ares_addrinfo into rec[*n] (distinct only).
 * Past FERRY_DNS_MAX_ANSWERS the lowest addresses are kept (a record that
 * sorts below the greatest kept one takes its place), so which ones stay
 * does not depend on the order the server sent them in. */
static void collect_addrs(const struct ares_addrinfo *ai, struct ferry_dns_record *rec,
                          size_t *n, size_t *dropped, uint32_t *ttl, const char *target,
                          uint16_t prio, uint16_t weight)
{
    for (const struct ares_addrinfo_node *nd = ai ? ai->nodes : NULL; nd; nd = nd->ai_next) {
        if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
            nd->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        bool dup = false;
        for (size_t i = 0; i < *n && !dup; i++)
            dup = rec[i].sa_len == nd->ai_addrlen && memcmp(&rec[i].sa, nd->ai_addr, nd->ai_addrlen) == 0;
        if (dup)
            continue;
        struct ferry_dns_record r;
        memset(&r, 0, sizeof(r));
        memcpy(&r.sa, nd->ai_addr, nd->ai_addrlen);
        r.sa_len = nd->ai_addrlen;
        r.port = ntohs(nd->ai_family == AF_INET ? ((struct sockaddr_in *)nd->ai_addr)->sin_port
                                                : ((struct sockaddr_in6 *)nd->ai_addr)->sin6_port);
        r.priority = prio;
        r.weight = weight;
        snprintf(r.target, sizeof(r.target), "%s", target ? target : "");
        size_t at = *n;
        if (*n == FERRY_DNS_MAX_ANSWERS) {
            (*dropped)++;
            at = rec_max(rec, *n);
            if (rec_cmp(&r, &rec[at]) >= 0)
                continue;
        } else {
            (*n)++;
        }
        rec[at] = r;
        uint32_t t = nd->ai_ttl > 0 ? (uint32_t)nd->ai_ttl : 0;
        if (t < *ttl)
            *ttl = t;
    }
}

/* The kept records in address order: the answer reads the same whatever
 * order the server sent it in. */
static void sort_records(struct ferry_dns_record *rec, size_t n)
{
    qsort(rec, n, sizeof(*rec), rec_qsort_cmp);
}

/* A host lookup. */
struct host_req {
    ferry_dns_cb cb;
    void *arg;
};

static void host_done(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct host_req *q = arg;
    (void)timeouts;
    struct ferry_dns_record *rec = calloc(FERRY_DNS_MAX_ANSWERS, sizeof(*rec));
    struct ferry_dns_answer a = {.status = status, .ttl_s = UINT32_MAX};
    if (status == ARES_SUCCESS && !rec)
        a.status = ARES_ENOMEM;
    if (a.status == ARES_SUCCESS)
        collect_addrs(ai, rec, &a.n, &a.dropped, &a.ttl_s, NULL, 0, 0);
    else if (a.status == ARES_ENOTFOUND || a.status == ARES_ENODATA)
        a.status = ARES_SUCCESS; /* the name has no address: an empty set */
    a.err = a.status ? ares_strerror(a.status) : NULL;
    a.rec = rec;
    sort_records(rec, a.n);
    if (ai)
        ares_freeaddrinfo(ai);
    q->cb(q->arg, &a);
    free(rec);
    free(q);
}

int ferry_dns_lookup_host(struct ferry_dns *dns, const char *host, uint16_t port,
                          ferry_dns_cb cb, void *arg)
{
    struct host_req *q = malloc(sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->cb = cb;
    q->arg = arg;
    char svc[8];
    snprintf(svc, sizeof(svc), "%u", (unsigned)port);
    struct ares_addrinfo_hints h = {.ai_family = AF_UNSPEC,
                                    .ai_flags = ARES_AI_NUMERICSERV | ARES_AI_NOSORT,
                                    .ai_socktype = SOCK_STREAM};
    ares_getaddrinfo(dns->ch, host, svc, &h, host_done, q);
    ferry_dns_kick(dns);
    return 0;
}

/* An SRV lookup: the records, then each target's addresses. */
struct srv_req {
    struct ferry_dns *dns;
    ferry_dns_cb cb;
    void *arg;
    struct ferry_dns_record *rec; /* resolved, [FERRY_DNS_MAX_ANSWERS] */
    struct ferry_dns_answer a;
    unsigned pending;             /* target lookups not back yet */
    int failed;                   /* status of a failed target lookup */
};

struct srv_target {
    struct srv_req *q;
    char name[256];
    uint16_t port, priority, weight;
};

static void srv_finish(struct srv_req *q)
{
    if (q->a.status == ARES_SUCCESS && q->a.n == 0 && q->failed)
        q->a.status = q->failed; /* nothing resolved because lookups failed */
    q->a.err = q->a.status ? ares_strerror(q->a.status) : NULL;
    q->a.rec = q->rec;
    sort_records(q->rec, q->a.n);
    q->cb(q->arg, &q->a);
    free(q->rec);
    free(q);
}

static void srv_target_done(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct srv_target *t = arg;
    struct srv_req *q = t->q;
    (void)timeouts;
    if (status == ARES_SUCCESS)
        collect_addrs(ai, q->rec, &q->a.n, &q->a.dropped, &q->a.ttl_s, t->name, t->priority,
                      t->weight);
    else if (status == ARES_EDESTRUCTION)
        q->a.status = status;
    else if (status != ARES_ENOTFOUND && status != ARES_ENODATA)
        q->failed = status;
    if (ai)
        ares_freeaddrinfo(ai);
    free(t);
    if (--q->pending == 0)
        srv_finish(q);
}

/* One SRV record, as either c-ares API gives it (host owned by the reply). */
struct srv_rec {
    const char *host;
    uint16_t port, priority, weight;
};

static int srv_cmp(const void *pa, const void *pb)
{
    const struct srv_rec *a = pa, *b = pb;
    if (a->priority != b->priority)
        return a->priority < b->priority ? -1 : 1;
    int c = strcmp(a->host, b->host);
    if (c != 0)
        return c;
    if (a->port != b->port)
        return a->port < b->port ? -1 : 1;
    return a->weight < b->weight ? -1 : a->weight > b->weight;
}

/* Starts the address lookups of the records' targets, at most
 * FERRY_DNS_MAX_ANSWERS of them: sorted by priority, target and port, so an
 * answer too large is cut the same way whatever its order (the rest counted
 * in dropped). SRV targets: ports differ per record, so the addresses get
 * the record's port (getaddrinfo is asked with it). */
static void srv_start(struct srv_req *q, struct srv_rec *recs, size_t n)
{
    if (n > 1)
        qsort(recs, n, sizeof(*recs), srv_cmp);
    if (n > FERRY_DNS_MAX_ANSWERS) {
        q->a.dropped += n - FERRY_DNS_MAX_ANSWERS;
        n = FERRY_DNS_MAX_ANSWERS;
    }
    for (size_t i = 0; i < n; i++) {
        const struct srv_rec *r = &recs[i];
        struct srv_target *t = calloc(1, sizeof(*t));
        if (!t) {
            q->failed = ARES_ENOMEM;
            break;
        }
        t->q = q;
        snprintf(t->name, sizeof(t->name), "%s", r->host);
        t->port = r->port;
        t->priority = r->priority;
        t->weight = r->weight;
        char svc[8];
        snprintf(svc, sizeof(svc), "%u", (unsigned)r->port);
        struct ares_addrinfo_hints h = {.ai_family = AF_UNSPEC,
                                        .ai_flags = ARES_AI_NUMERICSERV | ARES_AI_NOSORT,
                                        .ai_socktype = SOCK_STREAM};
        q->pending++;
        ares_getaddrinfo(q->dns->ch, t->name, svc, &h, srv_target_done, t);
    }
}

/* The SRV answer's status: no such service is an empty set, not an error. */
static int srv_status(int status)
{
    return status == ARES_ENOTFOUND || status == ARES_ENODATA ? ARES_SUCCESS : status;
}

#ifdef FERRY_CARES_DNSREC
/* c-ares >= 1.28: the parsed reply (ares_query_dnsrec). */
static void srv_done(void *arg, ares_status_t status, size_t timeouts,
                     const ares_dns_record_t *dnsrec)
{
    struct srv_req *q = arg;
    (void)timeouts;
    q->a.status = srv_status((int)status);
    size_t n = status == ARES_SUCCESS && dnsrec ? ares_dns_record_rr_cnt(dnsrec, ARES_SECTION_ANSWER)
                                                : 0;
    struct srv_rec *recs = n ? malloc(n * sizeof(*recs)) : NULL;
    if (n && !recs) {
        q->failed = ARES_ENOMEM;
        n = 0;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const ares_dns_rr_t *rr = ares_dns_record_rr_get_const(dnsrec, ARES_SECTION_ANSWER, i);
        if (ares_dns_rr_get_ttl(rr) < q->a.ttl_s)
            q->a.ttl_s = ares_dns_rr_get_ttl(rr);
        if (ares_dns_rr_get_type(rr) == ARES_REC_TYPE_SRV)
            recs[k++] = (struct srv_rec){ares_dns_rr_get_str(rr, ARES_RR_SRV_TARGET),
                                         ares_dns_rr_get_u16(rr, ARES_RR_SRV_PORT),
                                         ares_dns_rr_get_u16(rr, ARES_RR_SRV_PRIORITY),
                                         ares_dns_rr_get_u16(rr, ARES_RR_SRV_WEIGHT)};
    }
    q->pending = 1; /* held while the targets are started */
    srv_start(q, recs, k);
    free(recs);
    if (--q->pending == 0)
        srv_finish(q);
}
#else
/* Older c-ares: the raw reply, parsed with ares_parse_srv_reply (ares_query). */
static void srv_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct srv_req *q = arg;
    (void)timeouts;
    struct ares_srv_reply *srv = NULL;
    if (status == ARES_SUCCESS)
        status = ares_parse_srv_reply(abuf, alen, &srv);
    q->a.status = srv_status(status);
    if (status == ARES_SUCCESS) {
        uint32_t ttl = ferry_dns_reply_min_ttl(abuf, alen);
        if (ttl < q->a.ttl_s)
            q->a.ttl_s = ttl;
    }
    size_t n = 0;
    for (struct ares_srv_reply *r = status == ARES_SUCCESS ? srv : NULL; r; r = r->next)
        n++;
    struct srv_rec *recs = n ? malloc(n * sizeof(*recs)) : NULL;
    if (n && !recs) {
        q->failed = ARES_ENOMEM;
        n = 0;
    }
    size_t k = 0;
    for (struct ares_srv_reply *r = srv; r && k < n; r = r->next)
        recs[k++] = (struct srv_rec){r->host, r->port, r->priority, r->weight};
    q->pending = 1; /* held while the targets are started */
    srv_start(q, recs, k);
    free(recs);
    if (srv)
        ares_free_data(srv);
    if (--q->pending == 0)
        srv_finish(q);
}
#endif

int ferry_dns_lookup_srv(struct ferry_dns *dns, const char *name, ferry_dns_cb cb, void *arg)
{
    struct srv_req *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->rec = calloc(FERRY_DNS_MAX_ANSWERS, sizeof(*q->rec));
    if (!q->rec) {
        free(q);
        return -ENOMEM;
    }
    q->dns = dns;
    q->cb = cb;
    q->arg = arg;
    q->a.ttl_s = UINT32_MAX;
#ifdef FERRY_CARES_DNSREC
    ares_query_dnsrec(dns->ch, name, ARES_CLASS_IN, ARES_REC_TYPE_SRV, srv_done, q, NULL);
#else
    ares_query(dns->ch, name, ns_c_in, ns_t_srv, srv_done, q);
#endif
    ferry_dns_kick(dns);
    return 0;
}
