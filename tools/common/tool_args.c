/*
 * tool_args.c — command-line value parsing for the tools (see tool_args.h).
 */
#include "tool_args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "conf.h"
#include "util.h"

bool tool_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

bool tool_parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

bool tool_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

bool tool_parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0) || !isfinite(v))
        return false;
    if (*end == '\0') {
        /* A bare number: seconds, as the tools have always read it (the
         * configuration refuses it as ambiguous; a flag documents its unit). */
        *out = v;
        return true;
    }
    uint64_t us;
    if (conf_parse_duration_us(s, &us) != RP_OK)
        return false;
    *out = (double)us / 1e6;
    return true;
}
