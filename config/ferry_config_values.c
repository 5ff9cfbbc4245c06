/* Scalar value parsers of ferry.ini: numbers, durations, sizes, booleans,
 * names. Each checks the whole string: "80abc", "-1", " 5" and "" are errors,
 * never a silently shortened number. */
#include "ferry_config.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Leading decimal digits of s into *out; *end after them. -EINVAL with no
 * digit, -ERANGE on overflow of uint64_t. */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return 0;
}

int ferry_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    uint64_t v;
    const char *end;
    int rc = parse_digits(s, &v, &end);
    if (rc < 0)
        return rc;
    if (*end != '\0')
        return -EINVAL;
    if (v > max)
        return -ERANGE;
    *out = (unsigned long)v;
    return 0;
}

/* v * mul without overflow. */
static int scale(uint64_t v, uint64_t mul, uint64_t *out)
{
    if (mul != 0 && v > UINT64_MAX / mul)
        return -ERANGE;
    *out = v * mul;
    return 0;
}

int ferry_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
    };
    uint64_t v;
    const char *end;
    int rc = parse_digits(s, &v, &end);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].unit) == 0)
            return scale(v, units[i].ms, out);
    return -EINVAL;
}

int ferry_parse_size(const char *s, size_t *out)
{
    uint64_t v, mul, r;
    const char *end;
    int rc = parse_digits(s, &v, &end);
    if (rc < 0)
        return rc;
    if (end[0] == '\0')
        mul = 1;
    else if (end[1] != '\0')
        return -EINVAL;
    else if (end[0] == 'k' || end[0] == 'K')
        mul = 1024;
    else if (end[0] == 'm' || end[0] == 'M')
        mul = 1024 * 1024;
    else if (end[0] == 'g' || end[0] == 'G')
        mul = 1024 * 1024 * 1024;
    else
        return -EINVAL;
    rc = scale(v, mul, &r);
    if (rc < 0)
        return rc;
    if (r > SIZE_MAX)
        return -ERANGE;
    *out = (size_t)r;
    return 0;
}

int ferry_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true"};
    static const char *const no[] = {"off", "no", "false"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

bool ferry_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= FERRY_NAME_MAX)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}
