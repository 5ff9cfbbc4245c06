/* ferryd: servers that come and go at runtime (see serverset.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "serverset.h"

/* "192.0.2.7:80" or "[2001:db8::7]:80"; false for other families. */
static bool name_of(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
        return true;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
        return true;
    }
    return false;
}

size_t ferry_sset_wanted(const struct ferry_dns_record *rec, size_t n, bool srv,
                         struct ferry_sset_want *out, size_t max)
{
    unsigned lowest = 65536;
    for (size_t i = 0; srv && i < n; i++)
        if (rec[i].sa_len && rec[i].priority < lowest)
            lowest = rec[i].priority;
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        const struct ferry_dns_record *r = &rec[i];
        if (r->sa_len == 0 || r->sa_len > sizeof(r->sa))
            continue;
        struct ferry_sset_want w;
        memset(&w, 0, sizeof(w));
        if (!name_of(&r->sa, w.name, sizeof(w.name)))
            continue;
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = strcmp(out[j].name, w.name) == 0;
        if (dup)
            continue;
        memcpy(&w.sa, &r->sa, r->sa_len);
        w.sa_len = r->sa_len;
        w.weight = srv ? (r->weight ? r->weight : 1) : 1;
        w.backup = srv && r->priority > lowest;
        out[k++] = w;
    }
    return k;
}

static long find_slot(const struct ferry_sset_slot *slots, size_t nslots, const char *name)
{
    for (size_t i = 0; i < nslots; i++)
        if (slots[i].used && strcmp(slots[i].name, name) == 0)
            return (long)i;
    return -1;
}

static long find_slot_wanted(const struct ferry_sset_want *want, size_t nwant, const char *name)
{
    for (size_t j = 0; j < nwant; j++)
        if (strcmp(want[j].name, name) == 0)
            return (long)j;
    return -1;
}

size_t ferry_sset_plan(const struct ferry_sset_slot *slots, size_t nslots, size_t cap,
                       const struct ferry_sset_want *want, size_t nwant,
                       struct ferry_sset_action *act, size_t *ignored)
{
    size_t na = 0, next_free = nslots, next_reuse = 0;
    *ignored = 0;
    /* Unlist first: a slot freed by this answer is never reused by it (its
     * connections still run; `reusable` is only ever true for departed ones). */
    for (size_t i = 0; i < nslots; i++) {
        if (!slots[i].used || !slots[i].listed)
            continue;
        bool still = false;
        for (size_t j = 0; j < nwant && !still; j++)
            still = strcmp(want[j].name, slots[i].name) == 0;
        if (!still)
            act[na++] = (struct ferry_sset_action){FERRY_SSET_UNLIST, i, 0};
    }
    for (size_t j = 0; j < nwant; j++) {
        long s = find_slot(slots, nslots, want[j].name);
        if (s >= 0) {
            act[na++] = (struct ferry_sset_action){
                slots[s].listed ? FERRY_SSET_KEEP : FERRY_SSET_RELIST, (size_t)s, j};
            continue;
        }
        if (next_free < cap) {
            act[na++] = (struct ferry_sset_action){FERRY_SSET_NEW, next_free++, j};
            continue;
        }
        while (next_reuse < nslots &&
               !(slots[next_reuse].used && !slots[next_reuse].listed && slots[next_reuse].reusable &&
                 find_slot_wanted(want, nwant, slots[next_reuse].name) < 0))
            next_reuse++;
        if (next_reuse < nslots)
            act[na++] = (struct ferry_sset_action){FERRY_SSET_NEW, next_reuse++, j};
        else
            (*ignored)++;
    }
    return na;
}
