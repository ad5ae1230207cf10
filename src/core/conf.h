/*
 * conf.h — YAML documents as a tree with source positions, and typed
 * accessors that record precise "FILE:LINE:COL: message" errors.
 *
 * conf.c reads YAML with libyaml into a small tree (maps, sequences,
 * scalars) that remembers where every node came from.  Each subsystem
 * parses its own section from that tree (config.c for the top level and the
 * proxy, admit.c for overload control, status.c for the status page, ...),
 * so the schema lives next to the code that uses it, while every error
 * message has one format.  Accessors never stop at the first error: they
 * record it and return RP_ERR, so `rampart -t` can list every mistake.
 */
#ifndef RP_CONF_H
#define RP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

enum conf_kind { CONF_SCALAR, CONF_MAP, CONF_SEQ };

struct conf_node {
    enum conf_kind kind;
    int line, col;           /* 1-based position of the value */
    const char *key;         /* key text when the node is a map value, else NULL */
    int key_line, key_col;   /* position of that key */
    const char *value;       /* scalar text (NUL-terminated); NULL otherwise */
    struct conf_node *child; /* first entry of a map or sequence */
    struct conf_node *next;  /* next sibling */
};

struct conf_doc; /* opaque: owns the nodes, the file name and the errors */

/* Load a YAML file.  Always returns a document (check conf_error_count):
 * syntax errors are recorded like any other.  root is NULL when the file
 * could not be read or parsed. */
struct conf_doc *conf_load_file(const char *path);
/* Same, from memory; name is used in error messages. */
struct conf_doc *conf_load_string(const char *name, const char *text, size_t len);
void conf_free(struct conf_doc *doc);
const struct conf_node *conf_root(const struct conf_doc *doc);

/* Record an error at node (or at the document start if NULL). */
void conf_error(struct conf_doc *doc, const struct conf_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Record an error at node's key (falls back to the value position). */
void conf_error_key(struct conf_doc *doc, const struct conf_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t conf_error_count(const struct conf_doc *doc);
/* Print every error, one "FILE:LINE:COL: message" per line. */
void conf_print_errors(const struct conf_doc *doc, FILE *out);
/* The i-th error line (for tests), or NULL. */
const char *conf_error_at(const struct conf_doc *doc, size_t i);
const char *conf_file_name(const struct conf_doc *doc);

/* Map lookup: the value for key, or NULL (map may be NULL). */
const struct conf_node *conf_get(const struct conf_node *map, const char *key);
/* Require node to be a map; record an error otherwise. RP_OK/RP_ERR. */
int conf_expect_map(struct conf_doc *doc, const struct conf_node *node);
int conf_expect_seq(struct conf_doc *doc, const struct conf_node *node);
/* Record "unknown key" for every key of map not in allowed (NULL-ended).
 * Returns the number of unknown keys.  Duplicate keys are reported too:
 * the loader checks every map, so they are listed once per document. */
int conf_check_keys(struct conf_doc *doc, const struct conf_node *map, const char *const *allowed);

/* Typed scalars.  Each returns RP_OK and stores *out, or RP_ERR after
 * recording an error at node.  A NULL node is RP_OK and leaves *out as is
 * (the caller's default). */
int conf_string(struct conf_doc *doc, const struct conf_node *node, const char **out);
int conf_bool(struct conf_doc *doc, const struct conf_node *node, bool *out);
int conf_uint(struct conf_doc *doc, const struct conf_node *node, uint64_t min, uint64_t max, uint64_t *out);
int conf_double(struct conf_doc *doc, const struct conf_node *node, double min, double max, double *out);
/* "250ms", "10s", "2m", "1h", "1d"; a bare number is refused (ambiguous). */
int conf_duration_us(struct conf_doc *doc, const struct conf_node *node, uint64_t *out);
/* "512", "16k", "1m", "1g" (powers of 1024). */
int conf_size(struct conf_doc *doc, const struct conf_node *node, uint64_t *out);
/* "127.0.0.1:8080", "[::1]:8080", "localhost:80" (numeric or resolved at
 * load time); port required. */
int conf_addr(struct conf_doc *doc, const struct conf_node *node, struct sockaddr_storage *out, socklen_t *len);
/* A fraction ("0.1") or a percentage ("10%"), in [0, max] as a fraction;
 * a percentage outside is "expected a percentage between 0% and MAX%". */
int conf_fraction(struct conf_doc *doc, const struct conf_node *node, double max, double *out);
/* One of names[] (NULL-ended); *out is its index. */
int conf_enum(struct conf_doc *doc, const struct conf_node *node, const char *const *names, int *out);

/* Parse helpers usable without a document (return RP_OK/RP_ERR). */
int conf_parse_duration_us(const char *s, uint64_t *out);
int conf_parse_size(const char *s, uint64_t *out);

/* ---- additions (conf.c) ------------------------------------------------ */

/* Hard bounds on what conf_load_* accepts: a configuration is written by
 * people, so anything bigger is a mistake (or an attack on `rampart -t`). */
#define CONF_MAX_BYTES (1024 * 1024) /* document size */
#define CONF_MAX_NODES 100000        /* keys, values and items together */
#define CONF_MAX_DEPTH 64            /* nesting of maps and sequences */
#define CONF_MAX_ERRORS 100          /* recorded; the rest are counted */

/* Like conf_get, but records "missing required key \"key\"" at map's key
 * (or at the document start when map is NULL) when absent. */
const struct conf_node *conf_require(struct conf_doc *doc, const struct conf_node *map, const char *key);
/* Number of entries of a map or sequence (0 for scalars and NULL). */
size_t conf_len(const struct conf_node *node);

/* Range-checked variants: record "... is out of range (allowed MIN..MAX)". */
int conf_duration_range(struct conf_doc *doc, const struct conf_node *node, uint64_t min_us, uint64_t max_us,
                        uint64_t *out);
int conf_size_range(struct conf_doc *doc, const struct conf_node *node, uint64_t min, uint64_t max, uint64_t *out);

/* Address parsing without a document: RP_OK, or RP_ERR with the reason
 * ("port required", ...) in why[whycap]. */
int conf_parse_addr(const char *s, struct sockaddr_storage *out, socklen_t *len, char *why, size_t whycap);

/* Copy s into buf[cap] for quoting inside an error message: quotes,
 * backslashes and control bytes escaped, shortened with "..." after 64
 * characters.  Returns buf.  CONF_SHOW_CAP always fits the result. */
#define CONF_SHOW_CAP 300
const char *conf_show(const char *s, char *buf, size_t cap);
/* Same for a file path, shortened only when it does not fit buf: a path
 * cut after 64 characters would not say which file is meant. */
#define CONF_SHOW_PATH_CAP 1024
const char *conf_show_path(const char *s, char *buf, size_t cap);

/* Format a duration the way the configuration writes it ("250ms", "1.5s",
 * "2m", "1d"); returns bytes written, or -1 when it did not fit. */
int conf_format_duration(char *buf, size_t cap, uint64_t us);

/* ---- table-driven sections ---------------------------------------------
 *
 * A section is one table of rows, one row per key: its kind, where the
 * value goes in the section's struct (offset and size), its bounds and its
 * default.  The known-keys list and every error message come from the
 * table, so a key cannot be accepted without being parsed, nor parsed
 * without being accepted (as nginx's ngx_command_t rows do).
 *
 *     static const struct conf_field retry_fields[] = {
 *         CONF_FIELD_DOUBLE("budget", struct retry_conf, budget, 0.0, 1.0, 0.2),
 *         CONF_FIELD_DURATION("window", struct retry_conf, window_us, SEC(1), HOUR(1), SEC(10)),
 *         CONF_FIELD_END
 *     };
 *     conf_fields_defaults(retry_fields, &conf);
 *     conf_fields_parse(doc, node, retry_fields, &conf);
 *
 * Checks that span several keys (min <= max, timeout < interval) stay in
 * the section's parser, after conf_fields_parse().  A key whose value is
 * not a scalar of one of these kinds is a CONF_F_CUSTOM row: the table
 * still owns the key, and its parse function reads the node. */

enum conf_field_kind {
    CONF_F_END = 0,  /* table terminator */
    CONF_F_BOOL,     /* bool */
    CONF_F_UINT,     /* unsigned integer of size 1, 2, 4 or 8 bytes, in [min, max] */
    CONF_F_DOUBLE,   /* double, in [dmin, dmax] */
    CONF_F_DURATION, /* uint64_t microseconds, in [min, max]; below floor: "KEY is too short" */
    CONF_F_FRACTION, /* double: a fraction or a percentage, conf_fraction() with dmax */
    CONF_F_SIZE,     /* unsigned integer (4 or 8 bytes) of bytes ("16k"), in [min, max] */
    CONF_F_ENUM,     /* int: index into names[] */
    CONF_F_STRBUF,   /* char[size]: copied, refused when it does not fit; min is the least length */
    CONF_F_CUSTOM,   /* parse(doc, node, base) when the key is present */
    CONF_F_IGNORE,   /* accepted here, parsed by someone else (documented at the row) */
};

struct conf_field {
    const char *key;
    enum conf_field_kind kind;
    size_t offset; /* of the member in the section's struct */
    size_t size;   /* sizeof the member */
    uint64_t min, max, def;
    uint64_t floor; /* CONF_F_DURATION: shorter values are refused as "KEY is too short" */
    double dmin, dmax, ddef;
    const char *const *names; /* CONF_F_ENUM: NULL-ended */
    const char *sdef;         /* CONF_F_STRBUF default */
    int (*parse)(struct conf_doc *doc, const struct conf_node *node, void *base);
};

#define CONF_MEMBER_SIZE(type, member) sizeof(((type *)0)->member)
#define CONF_FIELD_BOOL(k, type, m, d)                                                                                 \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_BOOL, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m), .def = (d)    \
    }
#define CONF_FIELD_UINT(k, type, m, lo, hi, d)                                                                         \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_UINT, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m), .min = (lo),  \
        .max = (hi), .def = (d)                                                                                        \
    }
#define CONF_FIELD_DOUBLE(k, type, m, lo, hi, d)                                                                       \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_DOUBLE, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m),             \
        .dmin = (lo), .dmax = (hi), .ddef = (d)                                                                        \
    }
#define CONF_FIELD_DURATION(k, type, m, lo, hi, d)                                                                     \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_DURATION, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m),           \
        .min = (lo), .max = (hi), .def = (d)                                                                           \
    }
#define CONF_FIELD_DURATION_FLOOR(k, type, m, fl, hi, d)                                                               \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_DURATION, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m), .min = 0, \
        .max = (hi), .def = (d), .floor = (fl)                                                                         \
    }
#define CONF_FIELD_FRACTION(k, type, m, hi, d)                                                                         \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_FRACTION, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m),           \
        .dmax = (hi), .ddef = (d)                                                                                      \
    }
#define CONF_FIELD_SIZE(k, type, m, lo, hi, d)                                                                         \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_SIZE, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m), .min = (lo),  \
        .max = (hi), .def = (d)                                                                                        \
    }
#define CONF_FIELD_ENUM(k, type, m, nm, d)                                                                             \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_ENUM, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m),               \
        .names = (nm), .def = (d)                                                                                      \
    }
#define CONF_FIELD_STRBUF(k, type, m, minlen, d)                                                                       \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_STRBUF, .offset = offsetof(type, m), .size = CONF_MEMBER_SIZE(type, m),             \
        .min = (minlen), .sdef = (d)                                                                                   \
    }
#define CONF_FIELD_CUSTOM(k, fn)                                                                                       \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_CUSTOM, .parse = (fn)                                                               \
    }
#define CONF_FIELD_IGNORE(k)                                                                                           \
    {                                                                                                                  \
        .key = (k), .kind = CONF_F_IGNORE                                                                              \
    }
#define CONF_FIELD_END                                                                                                 \
    {                                                                                                                  \
        .key = NULL, .kind = CONF_F_END                                                                                \
    }

/* Store every row's default in base (custom and ignored rows untouched). */
void conf_fields_defaults(const struct conf_field *fields, void *base);
/* node must be a map (NULL: nothing to do, RP_OK).  Records "unknown key"
 * for keys not in the table, then parses every present key into base;
 * absent keys keep what base holds.  RP_OK when no error was recorded. */
int conf_fields_parse(struct conf_doc *doc, const struct conf_node *node, const struct conf_field *fields, void *base);
/* The row for key, or NULL (for documentation and tests). */
const struct conf_field *conf_field_find(const struct conf_field *fields, const char *key);

#endif
