/* ferryd: picking a server (see balance.h).
 *
 * roundrobin: nginx's smooth weighted round robin: every pick adds each
 *   eligible server's weight to its current weight, takes the largest and
 *   subtracts the total from it. Weights 5,1,1 give a a b a c a a, not a burst.
 * leastconn: fewest active/weight (compared by cross-multiplying), ties
 *   broken round robin from a cursor.
 * random: two weighted random draws, the less loaded (active/weight) wins
 *   ("power of two choices").
 * source: weighted rendezvous (highest random weight) hashing of the client
 *   hash with each server's key (a hash of its name, not its position).
 *   Every worker and every process computes the same answer; when a server
 *   joins it takes about 1/N of the clients, when one leaves or becomes
 *   unusable only its clients move (spread over the others), and reordering
 *   the list (DNS answers do) moves nobody.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"

int ferry_lb_state_init(struct ferry_lb_state *st, size_t n, uint64_t seed)
{
    memset(st, 0, sizeof(*st));
    st->current_weight = calloc(n ? n : 1, sizeof(*st->current_weight));
    if (!st->current_weight)
        return -ENOMEM;
    st->n = n;
    /* splitmix64 of the seed: never 0, which xorshift could not leave. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    st->rng = z ? z : 0x2545f4914f6cdd1dull;
    return 0;
}

void ferry_lb_state_free(struct ferry_lb_state *st)
{
    free(st->current_weight);
    memset(st, 0, sizeof(*st));
}

static uint64_t rng_next(struct ferry_lb_state *st)
{
    /* xorshift64* */
    uint64_t x = st->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Marks eligible candidates in the group chosen by the backup rule.
 * Returns how many there are. */
static size_t eligible_set(const struct ferry_lb_candidate *c, size_t n, const bool *tried,
                           bool *el)
{
    size_t count[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        el[i] = c[i].usable && c[i].weight > 0 && !(tried && tried[i]);
        if (el[i])
            count[c[i].backup ? 1 : 0]++;
    }
    bool want_backup = count[0] == 0;
    for (size_t i = 0; i < n; i++)
        if (el[i] && c[i].backup != want_backup)
            el[i] = false;
    return want_backup ? count[1] : count[0];
}

static int pick_roundrobin(struct ferry_lb_state *st, const struct ferry_lb_candidate *c,
                           size_t n, const bool *el)
{
    int64_t total = 0;
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        if (!el[i])
            continue;
        st->current_weight[i] += c[i].weight;
        total += c[i].weight;
        if (best < 0 || st->current_weight[i] > st->current_weight[best])
            best = (int)i;
    }
    if (best >= 0)
        st->current_weight[best] -= total;
    return best;
}

/* <0 when a is less loaded than b: a.active/a.weight < b.active/b.weight. */
static int load_cmp(const struct ferry_lb_candidate *a, const struct ferry_lb_candidate *b)
{
    uint64_t l = (uint64_t)a->active * b->weight, r = (uint64_t)b->active * a->weight;
    return l < r ? -1 : l > r ? 1 : 0;
}

static int pick_leastconn(struct ferry_lb_state *st, const struct ferry_lb_candidate *c,
                          size_t n, const bool *el)
{
    int best = -1;
    /* Scanning from the cursor makes the first of equals the next in turn. */
    for (size_t k = 0; k < n; k++) {
        size_t i = (st->rr_cursor + k) % n;
        if (el[i] && (best < 0 || load_cmp(&c[i], &c[best]) < 0))
            best = (int)i;
    }
    if (best >= 0)
        st->rr_cursor = ((size_t)best + 1) % n;
    return best;
}

/* One draw with probability proportional to weight. */
static int weighted_draw(struct ferry_lb_state *st, const struct ferry_lb_candidate *c, size_t n,
                         const bool *el, uint64_t total)
{
    uint64_t r = rng_next(st) % total;
    for (size_t i = 0; i < n; i++) {
        if (!el[i])
            continue;
        if (r < c[i].weight)
            return (int)i;
        r -= c[i].weight;
    }
    return -1; /* not reached: total is the sum of eligible weights */
}

static int pick_random(struct ferry_lb_state *st, const struct ferry_lb_candidate *c, size_t n,
                       const bool *el)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (el[i])
            total += c[i].weight;
    if (total == 0)
        return -1;
    int a = weighted_draw(st, c, n, el, total);
    int b = weighted_draw(st, c, n, el, total);
    if (a < 0 || b < 0)
        return a < 0 ? b : a;
    return load_cmp(&c[b], &c[a]) < 0 ? b : a;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* -ln(u) for u in (0, 1), without libm: u = m * 2^-k with m in [1, 2), and
 * ln(m) = 2 atanh((m-1)/(m+1)) by its series (t <= 1/3: 1e-10 accurate,
 * plenty for comparing scores). */
static double neg_ln(double u)
{
    int k = 0;
    while (u < 1.0) {
        u *= 2.0;
        k++;
    }
    double t = (u - 1.0) / (u + 1.0), t2 = t * t, term = t, sum = 0;
    for (int i = 1; i <= 19; i += 2) {
        sum += term / i;
        term *= t2;
    }
    return k * 0.6931471805599453 - 2.0 * sum;
}

static int pick_source(const struct ferry_lb_candidate *c, size_t n, const bool *el,
                       uint32_t client_hash)
{
    int best = -1;
    double best_score = 0;
    for (size_t i = 0; i < n; i++) {
        if (!el[i])
            continue;
        uint64_t key = c[i].key ? c[i].key : 0x9e3779b97f4a7c15ull * (i + 1);
        uint64_t h = mix64(((uint64_t)client_hash << 32) ^ key);
        /* u in (0, 1): weighted rendezvous score w / -ln(u) (Schindelhauer). */
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0;
        double score = (double)c[i].weight / neg_ln(u);
        if (best < 0 || score > best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    return best;
}

/* Most backends are small: their eligibility flags live on the stack. */
#define LB_STACK 64

int ferry_lb_pick(enum ferry_balance algo, struct ferry_lb_state *st,
                  const struct ferry_lb_candidate *c, size_t n, const bool *tried,
                  uint32_t client_hash)
{
    if (n > st->n)
        n = st->n;
    if (n == 0)
        return -1;
    bool stack_el[LB_STACK];
    bool *el = n <= LB_STACK ? stack_el : malloc(n * sizeof(*el));
    if (!el)
        return -1;
    int idx = -1;
    if (eligible_set(c, n, tried, el) > 0) {
        switch (algo) {
        case FERRY_BALANCE_ROUNDROBIN: idx = pick_roundrobin(st, c, n, el); break;
        case FERRY_BALANCE_LEASTCONN: idx = pick_leastconn(st, c, n, el); break;
        case FERRY_BALANCE_RANDOM: idx = pick_random(st, c, n, el); break;
        case FERRY_BALANCE_SOURCE: idx = pick_source(c, n, el, client_hash); break;
        }
    }
    if (el != stack_el)
        free(el);
    return idx;
}

uint64_t ferry_lb_server_key(const char *name)
{
    /* FNV-1a 64, then the finaliser. */
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    h = mix64(h);
    return h ? h : 1;
}

uint32_t ferry_lb_hash_addr(const struct sockaddr *sa)
{
    const uint8_t *p;
    size_t len;
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        p = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        len = 4;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        bool mapped = IN6_IS_ADDR_V4MAPPED(a6);
        p = a6->s6_addr + (mapped ? 12 : 0);
        len = mapped ? 4 : 16;
    } else {
        return 0;
    }
    /* FNV-1a, then a finaliser so nearby addresses spread. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return (uint32_t)mix64(h);
}
