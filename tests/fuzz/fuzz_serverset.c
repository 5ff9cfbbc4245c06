/* Fuzz target: what ferryd does with parsed DNS answers (c-ares parses the
 * wire format): the servers an answer asks for (ferry_sset_wanted) and how a
 * backend's discovered slots follow a series of answers (ferry_sset_plan),
 * applied to a model of the slots. Checked after every answer: names are
 * unique, a server keeps its slot while it is listed, a slot changes name
 * only when it was reusable, the slot count never passes its cap, every
 * server asked for is listed or counted as ignored, and only when no slot
 * was left. */
#include <arpa/inet.h>
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "serverset.h"

#define CAP 8          /* small, so that full and reuse paths are reached */
#define MAX_REC 64

struct model {
    struct ferry_sset_slot slot[CAP];
    size_t n;
};

/* One answer: [count][flags] then count records of 8 bytes:
 * family, a, b, c, port hi, port lo, priority, weight. */
static size_t read_answer(const uint8_t **p, const uint8_t *end, struct ferry_dns_record *rec,
                          bool *srv, uint8_t *reuse_mask)
{
    if (end - *p < 3)
        return 0;
    size_t count = (*p)[0] % (MAX_REC + 1);
    *srv = (*p)[1] & 1;
    *reuse_mask = (*p)[2];
    *p += 3;
    size_t n = 0;
    while (n < count && end - *p >= 8) {
        const uint8_t *r = *p;
        struct ferry_dns_record *d = &rec[n++];
        memset(d, 0, sizeof(*d));
        uint16_t port = (uint16_t)(r[4] << 8 | r[5]);
        if (r[0] & 1) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&d->sa;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(port);
            a->sin6_addr.s6_addr[0] = 0xfd;
            memcpy(&a->sin6_addr.s6_addr[13], r + 1, 3);
            d->sa_len = sizeof(*a);
        } else if (r[0] & 2) {
            d->sa_len = 0; /* an SRV target that did not resolve */
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&d->sa;
            a->sin_family = AF_INET;
            a->sin_port = htons(port);
            uint8_t ip[4] = {10, r[1], r[2], r[3]};
            memcpy(&a->sin_addr, ip, 4);
            d->sa_len = sizeof(*a);
        }
        d->port = port;
        d->priority = r[6];
        d->weight = r[7];
        *p += 8;
    }
    return n;
}

static void check_wanted(const struct ferry_dns_record *rec, size_t nrec, bool srv,
                         const struct ferry_sset_want *w, size_t n)
{
    unsigned lowest = 65536;
    for (size_t i = 0; srv && i < nrec; i++)
        if (rec[i].sa_len && rec[i].priority < lowest)
            lowest = rec[i].priority;
    for (size_t i = 0; i < n; i++) {
        assert(memchr(w[i].name, '\0', sizeof(w[i].name)) && w[i].name[0]);
        assert(w[i].weight >= 1 && (srv || w[i].weight == 1));
        assert(!w[i].backup || srv);
        for (size_t j = 0; j < i; j++)
            assert(strcmp(w[i].name, w[j].name) != 0);
        /* its backup flag is its record's priority against the lowest */
        bool found = false;
        for (size_t r = 0; r < nrec && !found; r++) {
            if (!rec[r].sa_len || memcmp(&rec[r].sa, &w[i].sa, rec[r].sa_len) != 0)
                continue;
            found = true;
            if (srv)
                assert(w[i].backup == (rec[r].priority > lowest));
        }
        assert(found);
    }
}

static long find(const struct model *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->slot[i].used && strcmp(m->slot[i].name, name) == 0)
            return (long)i;
    return -1;
}

static void apply(struct model *m, const struct ferry_sset_want *w, size_t nw, uint8_t reuse)
{
    struct model before = *m;
    for (size_t i = 0; i < m->n; i++)
        m->slot[i].reusable = m->slot[i].used && !m->slot[i].listed && (reuse >> (i % 8) & 1);
    struct ferry_sset_action act[CAP + MAX_REC];
    size_t ignored = 0;
    size_t na = ferry_sset_plan(m->slot, m->n, CAP, w, nw, act, &ignored);
    assert(na <= m->n + nw);
    struct model planned = *m;
    for (size_t k = 0; k < na; k++) {
        const struct ferry_sset_action *a = &act[k];
        assert(a->slot < CAP);
        struct ferry_sset_slot *s = &m->slot[a->slot];
        switch (a->op) {
        case FERRY_SSET_UNLIST:
            assert(a->slot < m->n && s->listed);
            s->listed = false;
            break;
        case FERRY_SSET_KEEP:
        case FERRY_SSET_RELIST:
            assert(a->want < nw && a->slot < m->n && s->used);
            assert(strcmp(s->name, w[a->want].name) == 0);
            assert(s->listed == (a->op == FERRY_SSET_KEEP));
            s->listed = true;
            s->weight = w[a->want].weight;
            s->backup = w[a->want].backup;
            break;
        case FERRY_SSET_NEW:
            assert(a->want < nw && find(&before, w[a->want].name) < 0);
            if (a->slot == m->n)
                m->n++;
            else
                assert(a->slot < planned.n && planned.slot[a->slot].reusable);
            memset(s, 0, sizeof(*s));
            strcpy(s->name, w[a->want].name);
            s->used = s->listed = true;
            s->weight = w[a->want].weight;
            s->backup = w[a->want].backup;
            break;
        }
    }
    assert(m->n <= CAP);
    size_t listed = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->slot[i].listed)
            continue;
        listed++;
        bool wanted = false;
        for (size_t j = 0; j < nw && !wanted; j++)
            wanted = strcmp(w[j].name, m->slot[i].name) == 0;
        assert(wanted); /* nothing listed that the answer does not ask for */
        for (size_t j = 0; j < i; j++)
            assert(!m->slot[j].used || strcmp(m->slot[j].name, m->slot[i].name) != 0);
        /* identity: a server listed before keeps its slot */
        long was = find(&before, m->slot[i].name);
        assert(was < 0 || (size_t)was == i);
    }
    assert(listed + ignored == nw);
    if (ignored) { /* only when no slot was free or reusable */
        assert(m->n == CAP);
        for (size_t i = 0; i < m->n; i++)
            assert(m->slot[i].listed || !planned.slot[i].reusable ||
                   find(&before, m->slot[i].name) == (long)i);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ferry_dns_record rec[MAX_REC];
    struct ferry_sset_want want[FERRY_DISCOVER_MAX];
    struct model m;
    memset(&m, 0, sizeof(m));
    const uint8_t *p = data, *end = data + size;
    for (int round = 0; round < 32 && end - p >= 3; round++) {
        bool srv;
        uint8_t reuse;
        size_t nrec = read_answer(&p, end, rec, &srv, &reuse);
        size_t nw = ferry_sset_wanted(rec, nrec, srv, want, FERRY_DISCOVER_MAX);
        assert(nw <= nrec);
        check_wanted(rec, nrec, srv, want, nw);
        apply(&m, want, nw, reuse);
    }
    return 0;
}

/* Seeds: three A records; the same three reordered with one gone; SRV with
 * two priorities and a port twice on one address. */
static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("\x03\x00\x00"
              "\x00\x00\x00\x02\x00\x50\x00\x00" "\x00\x00\x00\x03\x00\x50\x00\x00"
              "\x00\x00\x00\x04\x00\x50\x00\x00"
              "\x02\x00\xff"
              "\x00\x00\x00\x04\x00\x50\x00\x00" "\x00\x00\x00\x02\x00\x50\x00\x00"),
    FUZZ_SEED("\x03\x01\x00"
              "\x00\x00\x00\x02\x1f\x90\x0a\x01" "\x00\x00\x00\x02\x1f\x91\x0a\x03"
              "\x01\x00\x00\x04\x1f\x92\x14\x00"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}
