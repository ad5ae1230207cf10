/*
 * tool_args.h — command-line value parsing shared by the tools (llmsim,
 * loadgen).
 *
 * Each returns true and stores *out only when the whole argument is a valid
 * value inside [lo, hi]; on false *out is untouched, so the caller's
 * default survives and its "invalid value for --flag" message names the
 * problem.  Durations use the configuration's syntax (conf.h), so a value
 * means the same on a command line as in rampart.yaml.
 */
#ifndef TOOL_ARGS_H
#define TOOL_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* A decimal floating-point number (strtod syntax), finite, in [lo, hi]. */
bool tool_parse_double(const char *s, double lo, double hi, double *out);
/* A decimal integer in [lo, hi]. */
bool tool_parse_int(const char *s, long lo, long hi, int *out);
/* An unsigned decimal integer (a PRNG seed): any 64-bit value. */
bool tool_parse_u64(const char *s, uint64_t *out);
/* A duration in seconds, >= 0: a plain number is seconds ("1.5"); with a
 * unit it is conf_parse_duration_us's syntax ("500ms", "20s", "2m"). */
bool tool_parse_seconds(const char *s, double *out);

#endif
