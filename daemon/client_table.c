/* ferryd: per-client connection counts and rates (see client_table.h).
 *
 * Concurrency, without locks: a slot's address is claimed with a CAS of its
 * tag (0 -> tag) or, when re-assigned, by first moving its `active` from 0 to
 * BUSY (so nobody takes a connection on it meanwhile), then writing the tag
 * and clearing its rate, then releasing `active`. A worker that found its tag
 * takes a connection with a CAS on `active` and then checks the tag again:
 * if the slot was re-assigned in between, it gives the connection back and
 * looks again. A slot holding connections is never re-assigned, so release
 * is a plain decrement. The rate word is one 64-bit CAS.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "client_table.h"

#define BUSY UINT32_MAX
#define RETRIES 8

struct ferry_client_table *ferry_client_table_new(size_t capacity)
{
    size_t n = FERRY_CLIENTS_WINDOW;
    while (n < capacity && n < ((size_t)1 << 24))
        n <<= 1;
    struct ferry_client_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->slots = aligned_alloc(32, n * sizeof(*t->slots));
    if (!t->slots) {
        free(t);
        return NULL;
    }
    memset(t->slots, 0, n * sizeof(*t->slots));
    t->mask = n - 1;
    /* A per-process seed: which addresses share a window is not predictable. */
    if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed))
        t->seed = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ull;
    return t;
}

void ferry_client_table_free(struct ferry_client_table *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

size_t ferry_client_table_used(const struct ferry_client_table *t)
{
    return (size_t)atomic_load_explicit(&t->used, memory_order_relaxed);
}

size_t ferry_client_table_capacity(const struct ferry_client_table *t) { return t->mask + 1; }

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The address without its port (IPv4-mapped seen as IPv4), hashed; never 0. */
static uint64_t tag_of(const struct ferry_client_table *t, const struct sockaddr *sa)
{
    uint8_t b[16] = {0};
    uint64_t fam = 4;
    if (sa->sa_family == AF_INET) {
        memcpy(b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(b, a->s6_addr + 12, 4);
        } else {
            memcpy(b, a->s6_addr, 16);
            fam = 6;
        }
    } else {
        fam = 0; /* unix sockets: all one client */
    }
    uint64_t hi, lo;
    memcpy(&hi, b, 8);
    memcpy(&lo, b + 8, 8);
    uint64_t h = mix(mix(hi ^ t->seed) ^ lo ^ (fam << 56));
    return h ? h : 1;
}

/* The slot of `tag` in its window, claiming or re-assigning one when it has
 * none; NULL when every slot of the window holds connections (or the window
 * kept changing under us). */
static struct ferry_client_slot *find(struct ferry_client_table *t, uint64_t tag, uint32_t now)
{
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        struct ferry_client_slot *victim = NULL;
        uint32_t oldest = 0;
        bool busy = false;
        for (size_t i = 0; i < FERRY_CLIENTS_WINDOW; i++) {
            struct ferry_client_slot *s = &t->slots[(tag + i) & t->mask];
            uint64_t cur = atomic_load(&s->tag);
            if (cur == tag)
                return s;
            if (cur == 0) {
                if (atomic_compare_exchange_strong(&s->tag, &cur, tag)) {
                    atomic_fetch_add_explicit(&t->used, 1, memory_order_relaxed);
                    return s;
                }
                if (cur == tag)
                    return s; /* another worker claimed it for the same client */
                continue;
            }
            uint32_t act = atomic_load(&s->active);
            busy |= act == BUSY;
            uint32_t age = now - atomic_load_explicit(&s->seen, memory_order_relaxed);
            if (act == 0 && (!victim || age > oldest)) {
                victim = s;
                oldest = age;
            }
        }
        if (busy)
            continue; /* a slot is being re-assigned, maybe to this client: look again */
        if (!victim)
            return NULL;
        uint32_t zero = 0;
        if (!atomic_compare_exchange_strong(&victim->active, &zero, BUSY))
            continue;
        atomic_store(&victim->tag, tag);
        atomic_store(&victim->rate, 0);
        atomic_store(&victim->seen, now);
        atomic_store(&victim->active, 0);
        return victim;
    }
    return NULL;
}

/* Takes a connection on s unless it is at max (0: none). -EAGAIN: s is being
 * re-assigned. */
static int take(struct ferry_client_slot *s, unsigned max)
{
    uint32_t cur = atomic_load(&s->active);
    do {
        if (cur == BUSY)
            return -EAGAIN;
        if (max && cur >= max)
            return -EBUSY;
    } while (!atomic_compare_exchange_weak(&s->active, &cur, cur + 1));
    return 0;
}

/* Counts one new connection against `rate` per sliding second. */
static bool rate_ok(struct ferry_client_slot *s, unsigned rate, uint64_t now_ms)
{
    uint64_t sec = now_ms / 1000, frac = now_ms % 1000;
    uint64_t old = atomic_load(&s->rate), next;
    do {
        uint64_t wsec = old >> 32, prev = (old >> 16) & 0xffff, cur = old & 0xffff;
        if (wsec != (sec & 0xffffffff)) {
            prev = wsec + 1 == (sec & 0xffffffff) ? cur : 0;
            cur = 0;
        }
        /* prev * (1000 - frac) / 1000 + cur < rate, in integers */
        if (rate && prev * (1000 - frac) + cur * 1000 >= (uint64_t)rate * 1000)
            return false;
        if (cur < 0xffff)
            cur++;
        next = (sec & 0xffffffff) << 32 | prev << 16 | cur;
    } while (!atomic_compare_exchange_weak(&s->rate, &old, next));
    return true;
}

enum ferry_client_verdict ferry_client_admit(struct ferry_client_table *t,
                                             const struct sockaddr *sa, unsigned max_conns,
                                             unsigned rate, uint64_t now_ms,
                                             struct ferry_client_slot **held)
{
    uint64_t tag = tag_of(t, sa);
    uint32_t now = (uint32_t)now_ms;
    *held = NULL;
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        struct ferry_client_slot *s = find(t, tag, now);
        if (!s)
            break;
        int rc = take(s, max_conns);
        if (rc == -EAGAIN)
            continue;
        atomic_store_explicit(&s->seen, now, memory_order_relaxed);
        if (rc == -EBUSY)
            return FERRY_CLIENT_LIMIT;
        if (atomic_load(&s->tag) != tag) { /* re-assigned between find and take */
            ferry_client_release(s);
            continue;
        }
        if (!rate_ok(s, rate, now_ms)) {
            ferry_client_release(s);
            return FERRY_CLIENT_RATE;
        }
        *held = s;
        return FERRY_CLIENT_OK;
    }
    atomic_fetch_add_explicit(&t->untracked, 1, memory_order_relaxed);
    return FERRY_CLIENT_OK;
}

void ferry_client_release(struct ferry_client_slot *held)
{
    if (held)
        atomic_fetch_sub(&held->active, 1);
}
