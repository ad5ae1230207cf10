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

#endif
