/* ferryd: running out of local resources.
 *
 * socket() failing with EMFILE, or connect() with EADDRNOTAVAIL, is this
 * host's problem, not the server's: counting it as the server's connect
 * failure takes healthy servers down (haproxy#579). Instead the worker stops
 * accepting for a while, like an accept's EMFILE (asynccore net.c): the
 * clients wait in the kernel's queue while the connections we hold end and
 * give their descriptors back. The pause grows from 10 ms to 1 s while it
 * goes on. A warning line at most every 5 s carries the count of
 * occurrences since the last one, so thousands of failing connects cost a
 * handful of lines.
 */
#include "pressure.h"

#include <errno.h>
#include <string.h>

#include "log/log.h"

#define PAUSE_MIN_MS 10u
#define PAUSE_MAX_MS 1000u
#define WARN_EVERY_MS 5000u

bool ferry_pressure_is_local(int err)
{
    switch (-err) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL: /* no local port left */
        return true;
    default:
        return false;
    }
}

void ferry_pressure_hit(struct ferry_pressure *p, uint64_t now_ms, int err, const char *what)
{
    p->backoff_ms = p->backoff_ms == 0 ? PAUSE_MIN_MS
                    : p->backoff_ms * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS
                                                       : p->backoff_ms * 2;
    if (p->until_ms < now_ms + p->backoff_ms)
        p->until_ms = now_ms + p->backoff_ms;
    p->warn_count++;
    if (now_ms < p->warn_next_ms)
        return;
    ferry_log(FERRY_LOG_WARN, "accept_paused_no_resources",
              "during=%s error=%s count=%llu pause_ms=%u", what, strerror(-err),
              (unsigned long long)p->warn_count, p->backoff_ms);
    p->warn_count = 0;
    p->warn_next_ms = now_ms + WARN_EVERY_MS;
}
