/* Value parsers of the health-check keys: strings with C escapes
 * (health_send, health_expect) and status lists (health_status). Both check
 * the whole string; nothing is silently dropped or shortened. */
#include "ferry_config.h"

#include <errno.h>
#include <string.h>

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ferry_parse_escaped(const char *s, char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '\\') {
            switch (*++p) {
            case 'r': c = '\r'; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case '\\': c = '\\'; break;
            case 'x': {
                int hi = p[1] ? hex_digit(p[1]) : -1;
                int lo = hi >= 0 && p[2] ? hex_digit(p[2]) : -1;
                if (lo < 0)
                    return -EINVAL;
                c = (char)(hi << 4 | lo);
                p += 2;
                break;
            }
            default: /* unknown escape, or a lone '\' at the end */
                return -EINVAL;
            }
        }
        if (n == cap)
            return -ERANGE;
        out[n++] = c;
    }
    *len = n;
    return 0;
}

/* One element: "204" or "2xx" (case-insensitive x). */
static int status_item(const char *s, size_t n, struct ferry_status_set *set)
{
    if (n != 3 || s[0] < '1' || s[0] > '5')
        return -EINVAL;
    unsigned first = (unsigned)(s[0] - '0') * 100;
    bool cls = (s[1] == 'x' || s[1] == 'X') && (s[2] == 'x' || s[2] == 'X');
    if (cls) {
        for (unsigned code = first; code < first + 100; code++)
            set->bits[(code - 100) / 64] |= 1ull << ((code - 100) % 64);
        return 0;
    }
    if (s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
        return -EINVAL;
    unsigned code = first + (unsigned)(s[1] - '0') * 10 + (unsigned)(s[2] - '0');
    set->bits[(code - 100) / 64] |= 1ull << ((code - 100) % 64);
    return 0;
}

int ferry_parse_status_list(const char *s, struct ferry_status_set *out)
{
    struct ferry_status_set set;
    memset(&set, 0, sizeof(set));
    const char *p = s;
    for (;;) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ", \t");
        if (n == 0 || status_item(p, n, &set) < 0)
            return -EINVAL;
        p += n;
        p += strspn(p, " \t");
        if (*p == '\0')
            break;
        if (*p != ',')
            return -EINVAL;
        p++;
    }
    *out = set;
    return 0;
}
