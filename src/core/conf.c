/*
 * conf.c — YAML documents as a tree with positions, typed accessors, and one
 * error list per document.
 *
 * Loading walks libyaml's event stream (not its document API) and builds a
 * small tree of struct conf_node in an arena owned by the document: every
 * node and string of a document dies with conf_free(), so accessors can hand
 * out pointers into the tree without copies or reference counts.  Events
 * carry 0-based marks; nodes store them 1-based, as editors show them.
 *
 * What we accept is deliberately a subset of YAML: one document of maps,
 * sequences and scalars.  Anchors, aliases, tags and non-scalar keys are
 * refused with an error naming them, because a gateway configuration gains
 * nothing from them and each one makes "where did this value come from?"
 * harder to answer.  Documents are bounded in bytes, nodes and depth.
 * Duplicate keys are reported while loading, for every map, so a section
 * parser never has to wonder which of two values conf_get() returned.
 *
 * Errors are kept sorted by position (stable for equal positions) and
 * de-duplicated, so `rampart -t` lists mistakes in file order however the
 * section parsers happened to visit them.  A load error that leaves the
 * tree untrustworthy (syntax, unsupported feature, bounds) clears the root;
 * duplicate keys do not, so schema errors are still reported alongside.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util.h"

/* ---- arena -------------------------------------------------------------- */

#define CONF_CHUNK_SIZE (16 * 1024)

struct conf_chunk {
    struct conf_chunk *next;
    size_t used;
    size_t cap;
    max_align_t data[]; /* max_align_t keeps every allocation aligned */
};

struct conf_err {
    int line, col;
    char *text; /* "FILE:LINE:COL: message" */
};

struct conf_doc {
    char *name;
    struct conf_node *root;
    struct conf_chunk *chunks;
    size_t num_nodes;
    struct conf_err errs[CONF_MAX_ERRORS];
    size_t num_errs;
    size_t dropped_errs; /* errors past CONF_MAX_ERRORS, counted only */
};

static void *arena_alloc(struct conf_doc *doc, size_t n)
{
    const size_t align = sizeof(max_align_t);
    struct conf_chunk *c = doc->chunks;
    n = (n + align - 1) / align * align;
    if (!c || c->cap - c->used < n) {
        size_t cap = RP_MAX(n, (size_t)CONF_CHUNK_SIZE);
        c = rp_xmalloc(sizeof(*c) + cap);
        c->cap = cap;
        c->used = 0;
        c->next = doc->chunks;
        doc->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strndup(struct conf_doc *doc, const char *s, size_t n)
{
    char *p = arena_alloc(doc, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- errors ------------------------------------------------------------- */

#define SHOW_MAX 64            /* characters of a user value quoted in a message */
#define SHOW_CAP CONF_SHOW_CAP /* enough for SHOW_MAX characters, all escaped */

/* Copy s into buf for quoting in an error message: escaped (quotes,
 * backslashes, control bytes) so a message is always one printable line,
 * and shortened with "..." after max_chars characters (or when buf is
 * full) so a huge scalar cannot flood the output.  Non-ASCII bytes are kept
 * and never cut in the middle of a UTF-8 sequence. */
static const char *show_upto(const char *s, char *buf, size_t cap, size_t max_chars)
{
    size_t o = 0, shown = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    if (cap < 8) {
        if (cap)
            buf[0] = '\0';
        return buf;
    }
    while (*p) {
        char tmp[8];
        size_t tn;
        bool cont = (*p & 0xc0) == 0x80; /* UTF-8 continuation byte */
        if (!cont && shown >= max_chars)
            break;
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            tn = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            tn = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", *p);
        } else {
            tmp[0] = (char)*p;
            tn = 1;
        }
        if (o + tn + 4 > cap) /* keep room for "..." and NUL */
            break;
        memcpy(buf + o, tmp, tn);
        o += tn;
        p++;
        if (!cont)
            shown++; /* count characters, not bytes */
    }
    if (*p) {
        /* Stopped inside a character: drop its first bytes too. */
        if ((*p & 0xc0) == 0x80) {
            while (o > 0 && ((unsigned char)buf[o - 1] & 0xc0) == 0x80)
                o--;
            if (o > 0 && ((unsigned char)buf[o - 1] & 0xc0) == 0xc0)
                o--;
        }
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static const char *show(const char *s, char *buf, size_t cap)
{
    return show_upto(s, buf, cap, SHOW_MAX);
}

const char *conf_show(const char *s, char *buf, size_t cap)
{
    return show(s, buf, cap);
}

const char *conf_show_path(const char *s, char *buf, size_t cap)
{
    return show_upto(s, buf, cap, SIZE_MAX);
}

/* An error is one line whatever its callers quote: a section parser that
 * puts a raw value (or a file name holds a newline) in a message must not
 * split it, or forge a second "FILE:LINE:COL:" line.  Control bytes become
 * \xNN, as conf_show() writes them.  Takes and returns a malloc'd string. */
static char *one_line(char *text)
{
    size_t ctl = 0, o = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        ctl += *p < 0x20 || *p == 0x7f;
    if (ctl == 0)
        return text;
    size_t cap = strlen(text) + 3 * ctl + 1;
    char *out = rp_xmalloc(cap);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", *p);
        else
            out[o++] = (char)*p;
    }
    out[o] = '\0';
    free(text);
    return out;
}

static void error_v(struct conf_doc *doc, int line, int col, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void error_v(struct conf_doc *doc, int line, int col, const char *fmt, va_list ap)
{
    char msg[1024];
    size_t i, n;

    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(doc->name) + strlen(msg) + 32;
    char *text = rp_xmalloc(n);
    snprintf(text, n, "%s:%d:%d: %s", doc->name, line, col, msg);
    text = one_line(text);

    /* Two parsers looking at the same bad node report it once. */
    for (i = 0; i < doc->num_errs; i++) {
        if (strcmp(doc->errs[i].text, text) == 0) {
            free(text);
            return;
        }
    }
    if (doc->num_errs == CONF_MAX_ERRORS) {
        doc->dropped_errs++;
        free(text);
        return;
    }
    /* Insert after every error at or before this position. */
    for (i = doc->num_errs; i > 0; i--) {
        const struct conf_err *e = &doc->errs[i - 1];
        if (e->line < line || (e->line == line && e->col <= col))
            break;
        doc->errs[i] = doc->errs[i - 1];
    }
    doc->errs[i].line = line;
    doc->errs[i].col = col;
    doc->errs[i].text = text;
    doc->num_errs++;
}

static void error_pos(struct conf_doc *doc, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void error_pos(struct conf_doc *doc, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_v(doc, line, col, fmt, ap);
    va_end(ap);
}

void conf_error(struct conf_doc *doc, const struct conf_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_v(doc, at ? at->line : 1, at ? at->col : 1, fmt, ap);
    va_end(ap);
}

void conf_error_key(struct conf_doc *doc, const struct conf_node *at, const char *fmt, ...)
{
    int line = 1, col = 1;
    va_list ap;
    if (at && at->key) {
        line = at->key_line;
        col = at->key_col;
    } else if (at) {
        line = at->line;
        col = at->col;
    }
    va_start(ap, fmt);
    error_v(doc, line, col, fmt, ap);
    va_end(ap);
}

size_t conf_error_count(const struct conf_doc *doc)
{
    return doc ? doc->num_errs + doc->dropped_errs : 0;
}

const char *conf_error_at(const struct conf_doc *doc, size_t i)
{
    if (!doc || i >= doc->num_errs)
        return NULL;
    return doc->errs[i].text;
}

void conf_print_errors(const struct conf_doc *doc, FILE *out)
{
    if (!doc || !out)
        return;
    for (size_t i = 0; i < doc->num_errs; i++)
        fprintf(out, "%s\n", doc->errs[i].text);
    if (doc->dropped_errs)
        fprintf(out, "%s:1:1: too many errors (%zu more not shown)\n", doc->name, doc->dropped_errs);
}

const char *conf_file_name(const struct conf_doc *doc)
{
    return doc ? doc->name : NULL;
}

const struct conf_node *conf_root(const struct conf_doc *doc)
{
    return doc ? doc->root : NULL;
}

/* ---- loading ------------------------------------------------------------ */

struct frame {
    struct conf_node *node; /* the map or sequence being filled */
    struct conf_node *last; /* its last linked child */
    bool have_key;          /* map: a key was read, its value comes next */
    const char *key;
    int key_line, key_col;
};

struct loader {
    struct conf_doc *doc;
    const char *text;
    size_t len;
    struct frame stack[CONF_MAX_DEPTH];
    int depth;
    bool broken; /* the tree cannot be trusted: root is cleared at the end */
    bool stop;   /* stop reading events (bounds exceeded) */
};

static const char *kind_name(const struct conf_node *n)
{
    if (!n)
        return "nothing";
    switch (n->kind) {
    case CONF_MAP: return "a map";
    case CONF_SEQ: return "a sequence";
    case CONF_SCALAR: break;
    }
    return n->value[0] ? "a value" : "an empty value";
}

static struct conf_node *new_node(struct loader *ld, enum conf_kind kind, yaml_mark_t mark)
{
    if (ld->doc->num_nodes >= CONF_MAX_NODES) {
        error_pos(ld->doc, (int)mark.line + 1, (int)mark.column + 1, "too many nodes (max %d)", CONF_MAX_NODES);
        ld->broken = ld->stop = true;
        return NULL;
    }
    ld->doc->num_nodes++;
    struct conf_node *n = arena_alloc(ld->doc, sizeof(*n));
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->line = (int)mark.line + 1;
    n->col = (int)mark.column + 1;
    return n;
}

/* Give a finished (or just started) node its place: the document root, an
 * item of a sequence, a map key (kept only as text on the value that
 * follows), or a map value. */
static void attach(struct loader *ld, struct conf_node *n)
{
    struct frame *f;
    if (ld->depth == 0) {
        ld->doc->root = n;
        return;
    }
    f = &ld->stack[ld->depth - 1];
    if (f->node->kind == CONF_MAP && !f->have_key) {
        f->have_key = true;
        f->key_line = n->line;
        f->key_col = n->col;
        if (n->kind == CONF_SCALAR) {
            f->key = n->value;
        } else {
            error_pos(ld->doc, n->line, n->col, "map keys must be plain values, not %s", kind_name(n));
            ld->broken = true;
            f->key = "";
        }
        return;
    }
    if (f->node->kind == CONF_MAP) {
        n->key = f->key;
        n->key_line = f->key_line;
        n->key_col = f->key_col;
        f->have_key = false;
    }
    if (f->last)
        f->last->next = n;
    else
        f->node->child = n;
    f->last = n;
}

static int cmp_key(const void *a, const void *b)
{
    const struct conf_node *x = *(const struct conf_node *const *)a;
    const struct conf_node *y = *(const struct conf_node *const *)b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    if (x->key_line != y->key_line)
        return x->key_line < y->key_line ? -1 : 1;
    return x->key_col < y->key_col ? -1 : (x->key_col > y->key_col);
}

/* Sort the keys (O(n log n), maps can be large) and report each repeat at
 * its own position, naming where the key was first written. */
static void check_duplicates(struct conf_doc *doc, const struct conf_node *map)
{
    size_t n = conf_len(map), i = 0;
    const struct conf_node **v;
    if (n < 2)
        return;
    v = rp_xmalloc(n * sizeof(*v));
    for (const struct conf_node *c = map->child; c; c = c->next)
        v[i++] = c;
    qsort(v, n, sizeof(*v), cmp_key);
    for (i = 1; i < n; i++) {
        size_t first = i - 1;
        char k[SHOW_CAP];
        if (strcmp(v[i]->key, v[i - 1]->key) != 0)
            continue;
        while (first > 0 && strcmp(v[first - 1]->key, v[i]->key) == 0)
            first--;
        conf_error_key(doc, v[i], "duplicate key \"%s\" (first at line %d, column %d)", show(v[i]->key, k, sizeof k),
                       v[first]->key_line, v[first]->key_col);
    }
    free(v);
}

/* Anchors, tags: refused wherever they appear. */
static void refuse_extras(struct loader *ld, const yaml_event_t *ev, const yaml_char_t *anchor, const yaml_char_t *tag)
{
    char s[SHOW_CAP];
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (anchor) {
        error_pos(ld->doc, line, col, "anchors are not supported (&%s)", show((const char *)anchor, s, sizeof s));
        ld->broken = true;
    }
    if (tag) {
        /* Show "!!str" the way it was written, not libyaml's expansion. */
        static const char core[] = "tag:yaml.org,2002:";
        const char *t = (const char *)tag;
        bool short_form = strncmp(t, core, sizeof core - 1) == 0;
        error_pos(ld->doc, line, col, "tags are not supported (%s%s)", short_form ? "!!" : "",
                  show(short_form ? t + sizeof core - 1 : t, s, sizeof s));
        ld->broken = true;
    }
}

/* 1-based line and column of a byte offset (reader errors carry only that). */
static void offset_pos(const char *text, size_t len, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)text[i] & 0xc0) != 0x80) {
            (*col)++;
        }
    }
}

static void syntax_error(struct loader *ld, const yaml_parser_t *p)
{
    int line, col;
    const char *problem = p->problem ? p->problem : "unknown error";
    switch (p->error) {
    case YAML_READER_ERROR:
        offset_pos(ld->text, ld->len, p->problem_offset, &line, &col);
        error_pos(ld->doc, line, col, "syntax error: %s", problem);
        break;
    case YAML_SCANNER_ERROR:
    case YAML_PARSER_ERROR:
        line = (int)p->problem_mark.line + 1;
        col = (int)p->problem_mark.column + 1;
        if (p->context)
            error_pos(ld->doc, line, col, "syntax error: %s (%s at %d:%d)", problem, p->context,
                      (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
        else
            error_pos(ld->doc, line, col, "syntax error: %s", problem);
        break;
    case YAML_MEMORY_ERROR: error_pos(ld->doc, 1, 1, "out of memory while parsing"); break;
    default: error_pos(ld->doc, 1, 1, "syntax error: %s", problem); break;
    }
    ld->broken = true;
}

static void on_event(struct loader *ld, const yaml_event_t *ev)
{
    struct conf_node *n;
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;

    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (ld->doc->root) {
            error_pos(ld->doc, line, col, "only one YAML document is supported");
            ld->broken = ld->stop = true;
        }
        break;
    case YAML_ALIAS_EVENT: {
        char s[SHOW_CAP];
        error_pos(ld->doc, line, col, "aliases are not supported (*%s)",
                  show((const char *)ev->data.alias.anchor, s, sizeof s));
        ld->broken = true;
        /* Keep the map key/value pairing in step for the errors that follow. */
        if ((n = new_node(ld, CONF_SCALAR, ev->start_mark)) != NULL) {
            n->value = "";
            attach(ld, n);
        }
        break;
    }
    case YAML_SCALAR_EVENT: {
        const char *v = (const char *)ev->data.scalar.value;
        size_t vlen = ev->data.scalar.length;
        refuse_extras(ld, ev, ev->data.scalar.anchor, ev->data.scalar.tag);
        if (memchr(v, '\0', vlen)) {
            error_pos(ld->doc, line, col, "values must not contain NUL characters");
            ld->broken = true;
        }
        if ((n = new_node(ld, CONF_SCALAR, ev->start_mark)) != NULL) {
            n->value = arena_strndup(ld->doc, v, vlen);
            attach(ld, n);
        }
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool map = ev->type == YAML_MAPPING_START_EVENT;
        if (map)
            refuse_extras(ld, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag);
        else
            refuse_extras(ld, ev, ev->data.sequence_start.anchor, ev->data.sequence_start.tag);
        if (ld->depth == CONF_MAX_DEPTH) {
            error_pos(ld->doc, line, col, "nesting too deep (max %d levels)", CONF_MAX_DEPTH);
            ld->broken = ld->stop = true;
            break;
        }
        if ((n = new_node(ld, map ? CONF_MAP : CONF_SEQ, ev->start_mark)) == NULL)
            break;
        attach(ld, n);
        memset(&ld->stack[ld->depth], 0, sizeof(ld->stack[0]));
        ld->stack[ld->depth++].node = n;
        break;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (ld->depth > 0) {
            struct conf_node *done = ld->stack[--ld->depth].node;
            if (done->kind == CONF_MAP)
                check_duplicates(ld->doc, done);
        }
        break;
    default: /* stream start/end, document end: nothing to build */ break;
    }
}

static void load_text(struct conf_doc *doc, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct loader *ld;
    bool end = false;

    if (len > CONF_MAX_BYTES) {
        conf_error(doc, NULL, "file too large (%zu bytes, max %d)", len, CONF_MAX_BYTES);
        return;
    }
    if (!yaml_parser_initialize(&parser)) {
        conf_error(doc, NULL, "cannot initialise the YAML parser");
        return;
    }
    ld = rp_xcalloc(1, sizeof(*ld)); /* the frame stack is too big for the C stack */
    ld->doc = doc;
    ld->text = text;
    ld->len = len;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

    while (!end && !ld->stop) {
        if (!yaml_parser_parse(&parser, &ev)) {
            syntax_error(ld, &parser);
            break;
        }
        end = ev.type == YAML_STREAM_END_EVENT;
        on_event(ld, &ev);
        yaml_event_delete(&ev);
    }
    if (ld->broken)
        doc->root = NULL;
    yaml_parser_delete(&parser);
    free(ld);
}

static struct conf_doc *doc_new(const char *name)
{
    struct conf_doc *doc = rp_xcalloc(1, sizeof(*doc));
    doc->name = rp_xstrdup(name ? name : "<config>");
    return doc;
}

struct conf_doc *conf_load_string(const char *name, const char *text, size_t len)
{
    struct conf_doc *doc = doc_new(name);
    load_text(doc, text ? text : "", text ? len : 0);
    return doc;
}

struct conf_doc *conf_load_file(const char *path)
{
    struct conf_doc *doc = doc_new(path);
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");

    if (!f) {
        conf_error(doc, NULL, "cannot open: %s", strerror(errno));
        goto cleanup;
    }
    /* Read one byte past the limit so "too large" is detected without
     * trusting st_size (pipes, /proc files). */
    text = rp_xmalloc((size_t)CONF_MAX_BYTES + 1);
    len = fread(text, 1, (size_t)CONF_MAX_BYTES + 1, f);
    if (ferror(f)) {
        conf_error(doc, NULL, "cannot read: %s", strerror(errno));
        goto cleanup;
    }
    if (len > CONF_MAX_BYTES) {
        conf_error(doc, NULL, "file too large (more than %d bytes)", CONF_MAX_BYTES);
        goto cleanup;
    }
    load_text(doc, text, len);
cleanup:
    free(text);
    if (f)
        fclose(f);
    return doc;
}

void conf_free(struct conf_doc *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->num_errs; i++)
        free(doc->errs[i].text);
    while (doc->chunks) {
        struct conf_chunk *c = doc->chunks;
        doc->chunks = c->next;
        free(c);
    }
    free(doc->name);
    free(doc);
}

/* ---- tree access -------------------------------------------------------- */

const struct conf_node *conf_get(const struct conf_node *map, const char *key)
{
    if (!map || map->kind != CONF_MAP || !key)
        return NULL;
    for (const struct conf_node *c = map->child; c; c = c->next)
        if (strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

const struct conf_node *conf_require(struct conf_doc *doc, const struct conf_node *map, const char *key)
{
    const struct conf_node *n = conf_get(map, key);
    if (!n)
        conf_error_key(doc, map, "missing required key \"%s\"", key);
    return n;
}

size_t conf_len(const struct conf_node *node)
{
    size_t n = 0;
    if (!node || node->kind == CONF_SCALAR)
        return 0;
    for (const struct conf_node *c = node->child; c; c = c->next)
        n++;
    return n;
}

static int expect_kind(struct conf_doc *doc, const struct conf_node *node, enum conf_kind kind, const char *what)
{
    char s[SHOW_CAP];
    if (!node) {
        conf_error(doc, NULL, "expected %s", what);
        return RP_ERR;
    }
    if (node->kind == kind)
        return RP_OK;
    if (node->kind == CONF_SCALAR && node->value[0])
        conf_error(doc, node, "expected %s, got \"%s\"", what, show(node->value, s, sizeof s));
    else
        conf_error(doc, node, "expected %s, got %s", what, kind_name(node));
    return RP_ERR;
}

int conf_expect_map(struct conf_doc *doc, const struct conf_node *node)
{
    return expect_kind(doc, node, CONF_MAP, "a map");
}

int conf_expect_seq(struct conf_doc *doc, const struct conf_node *node)
{
    return expect_kind(doc, node, CONF_SEQ, "a sequence");
}

/* "a, b, c" into buf, shortened with "..." when it does not fit. */
static void join_names(const char *const *names, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; names[i]; i++) {
        int n = rp_snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", names[i]);
        if (n < 0) {
            if (cap >= 4)
                memcpy(buf + cap - 4, "...", 4);
            return;
        }
        o += (size_t)n;
    }
}

int conf_check_keys(struct conf_doc *doc, const struct conf_node *map, const char *const *allowed)
{
    int unknown = 0;
    char list[512];
    if (!map || map->kind != CONF_MAP)
        return 0;
    join_names(allowed, list, sizeof list);
    for (const struct conf_node *c = map->child; c; c = c->next) {
        size_t i;
        char k[SHOW_CAP];
        for (i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], c->key) == 0)
                break;
        if (allowed[i])
            continue;
        conf_error_key(doc, c, "unknown key \"%s\" (expected one of: %s)", show(c->key, k, sizeof k), list);
        unknown++;
    }
    /* Duplicate keys were already reported when the document was loaded. */
    return unknown;
}

/* ---- typed scalars ------------------------------------------------------ */

static int expect_scalar(struct conf_doc *doc, const struct conf_node *node, const char *what)
{
    if (node->kind == CONF_SCALAR)
        return RP_OK;
    conf_error(doc, node, "expected %s, got %s", what, kind_name(node));
    return RP_ERR;
}

int conf_string(struct conf_doc *doc, const struct conf_node *node, const char **out)
{
    if (!node)
        return RP_OK;
    if (expect_scalar(doc, node, "a string") != RP_OK)
        return RP_ERR;
    *out = node->value;
    return RP_OK;
}

int conf_bool(struct conf_doc *doc, const struct conf_node *node, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    char s[SHOW_CAP];
    if (!node)
        return RP_OK;
    if (expect_scalar(doc, node, "true or false") != RP_OK)
        return RP_ERR;
    size_t len = strlen(node->value);
    for (size_t i = 0; i < RP_ARRAY_LEN(yes); i++) {
        if (rp_strieq(node->value, len, yes[i])) {
            *out = true;
            return RP_OK;
        }
        if (rp_strieq(node->value, len, no[i])) {
            *out = false;
            return RP_OK;
        }
    }
    conf_error(doc, node, "bad boolean \"%s\": expected true or false", show(node->value, s, sizeof s));
    return RP_ERR;
}

/* Decimal digits only (no sign, no spaces); 0 ok, -1 syntax, -2 overflow. */
static int parse_u64(const char *s, const char **end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -2;
        v = v * 10 + d;
    }
    *end = p;
    *out = v;
    return 0;
}

int conf_uint(struct conf_doc *doc, const struct conf_node *node, uint64_t min, uint64_t max, uint64_t *out)
{
    char s[SHOW_CAP];
    const char *end = NULL;
    uint64_t v = 0;
    int rc;
    if (!node)
        return RP_OK;
    if (expect_scalar(doc, node, "a number") != RP_OK)
        return RP_ERR;
    rc = parse_u64(node->value, &end, &v);
    if (rc == -1 || (rc == 0 && *end)) {
        conf_error(doc, node, "bad number \"%s\": expected a non-negative integer", show(node->value, s, sizeof s));
        return RP_ERR;
    }
    if (rc == -2 || v < min || v > max) {
        conf_error(doc, node, "value \"%s\" is out of range (allowed %llu..%llu)", show(node->value, s, sizeof s),
                   (unsigned long long)min, (unsigned long long)max);
        return RP_ERR;
    }
    *out = v;
    return RP_OK;
}

int conf_double(struct conf_doc *doc, const struct conf_node *node, double min, double max, double *out)
{
    char s[SHOW_CAP];
    char *end = NULL;
    double v;
    const char *p;
    if (!node)
        return RP_OK;
    if (expect_scalar(doc, node, "a number") != RP_OK)
        return RP_ERR;
    p = node->value;
    /* strtod would skip spaces and accept hex, "inf" and "nan": refuse them. */
    bool plain = (*p >= '0' && *p <= '9') || ((*p == '-' || *p == '+' || *p == '.') && p[1]);
    for (const char *q = p; plain && *q; q++)
        if (!((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' || *q == '-' || *q == '+'))
            plain = false;
    errno = 0;
    v = plain ? strtod(p, &end) : 0.0;
    if (!plain || end == p || *end || errno == ERANGE || !isfinite(v)) {
        conf_error(doc, node, "bad number \"%s\": expected a decimal number", show(p, s, sizeof s));
        return RP_ERR;
    }
    if (v < min || v > max) {
        conf_error(doc, node, "value \"%s\" is out of range (allowed %g..%g)", show(p, s, sizeof s), min, max);
        return RP_ERR;
    }
    *out = v;
    return RP_OK;
}

/* Durations: digits, an optional fraction of up to 6 digits, and a unit.
 * Integer arithmetic only, so "0.1s" is exactly 100000us.
 * Returns 0 ok, -1 syntax, -2 overflow. */
#define DUR_MAX_FRAC 6
static int parse_duration(const char *s, uint64_t *out)
{
    static const struct {
        const char *name;
        uint64_t us;
    } units[] = {
        {"ms", 1000ull}, {"s", 1000000ull}, {"m", 60000000ull}, {"h", 3600000000ull}, {"d", 86400000000ull},
    };
    const char *p;
    uint64_t whole, frac = 0, scale = 1;
    int rc = parse_u64(s, &p, &whole);
    if (rc != 0)
        return rc;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (++digits > DUR_MAX_FRAC)
                return -1;
            frac = frac * 10 + (uint64_t)(*p - '0');
            scale *= 10;
        }
        if (digits == 0)
            return -1;
    }
    for (size_t i = 0; i < RP_ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        uint64_t u = units[i].us;
        /* frac < 10^6 and u <= 8.64e10: the product fits in 64 bits. */
        uint64_t part = frac * u / scale;
        if (whole > UINT64_MAX / u || whole * u > UINT64_MAX - part)
            return -2;
        *out = whole * u + part;
        return 0;
    }
    return -1;
}

int conf_parse_duration_us(const char *s, uint64_t *out)
{
    uint64_t v;
    if (!s || parse_duration(s, &v) != 0)
        return RP_ERR;
    *out = v;
    return RP_OK;
}

int conf_format_duration(char *buf, size_t cap, uint64_t us)
{
    static const struct {
        const char *name;
        uint64_t us;
    } units[] = {
        {"d", 86400000000ull}, {"h", 3600000000ull}, {"m", 60000000ull}, {"s", 1000000ull}, {"ms", 1000ull},
    };
    char frac[16];
    uint64_t unit = 1000ull;
    const char *name = "ms";
    int digits = 3;
    size_t n;

    if (us == 0)
        return rp_snprintf(buf, cap, "0s");
    for (size_t i = 0; i < RP_ARRAY_LEN(units); i++)
        if (us % units[i].us == 0)
            return rp_snprintf(buf, cap, "%llu%s", (unsigned long long)(us / units[i].us), units[i].name);
    if (us >= 1000000ull) {
        unit = 1000000ull;
        name = "s";
        digits = 6;
    }
    snprintf(frac, sizeof frac, "%0*llu", digits, (unsigned long long)(us % unit));
    n = strlen(frac);
    while (n > 1 && frac[n - 1] == '0')
        frac[--n] = '\0';
    return rp_snprintf(buf, cap, "%llu.%s%s", (unsigned long long)(us / unit), frac, name);
}

int conf_duration_us(struct conf_doc *doc, const struct conf_node *node, uint64_t *out)
{
    return conf_duration_range(doc, node, 0, UINT64_MAX, out);
}

int conf_duration_range(struct conf_doc *doc, const struct conf_node *node, uint64_t min_us, uint64_t max_us,
                        uint64_t *out)
{
    char s[SHOW_CAP], lo[32], hi[32];
    uint64_t v = 0;
    int rc;
    if (!node)
        return RP_OK;
    if (expect_scalar(doc, node, "a duration") != RP_OK)
        return RP_ERR;
    rc = parse_duration(node->value, &v);
    if (rc == -1) {
        conf_error(doc, node, "bad duration \"%s\": expected a number followed by ms, s, m, h or d",
                   show(node->value, s, sizeof s));
        return RP_ERR;
    }
    if (rc == -2) {
        conf_error(doc, node, "duration \"%s\" is too large", show(node->value, s, sizeof s));
        return RP_ERR;
    }
    if (v < min_us || v > max_us) {
        conf_format_duration(lo, sizeof lo, min_us);
        conf_format_duration(hi, sizeof hi, max_us);
        conf_error(doc, node, "duration \"%s\" is out of range (allowed %s..%s)", show(node->value, s, sizeof s), lo,
                   hi);
        return RP_ERR;
    }
    *out = v;
    return RP_OK;
}

/* Sizes: digits and an optional k, m or g (any case), powers of 1024.
 * Returns 0 ok, -1 syntax, -2 overflow. */
static int parse_size(const char *s, uint64_t *out)
{
    const char *p;
    uint64_t v;
    unsigned shift = 0;
    int rc = parse_u64(s, &p, &v);
    if (rc != 0)
        return rc;
    if (*p) {
        switch (*p) {
        case 'k':
        case 'K': shift = 10; break;
        case 'm':
        case 'M': shift = 20; break;
        case 'g':
        case 'G': shift = 30; break;
        default: return -1;
        }
        if (p[1])
            return -1;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -2;
    *out = v << shift;
    return 0;
}

int conf_parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    if (!s || parse_size(s, &v) != 0)
        return RP_ERR;
    *out = v;
    return RP_OK;
}

static void format_size(char *buf, size_t cap, uint64_t v)
{
    if (v && v % (1ull << 30) == 0)
        snprintf(buf, cap, "%llug", (unsigned long long)(v >> 30));
    else if (v && v % (1ull << 20) == 0)
        snprintf(buf, cap, "%llum", (unsigned long long)(v >> 20));
    else if (v && v % (1ull << 10) == 0)
        snprintf(buf, cap, "%lluk", (unsigned long long)(v >> 10));
    else
        snprintf(buf, cap, "%llu", (unsigned long long)v);
}

int conf_size(struct conf_doc *doc, const struct conf_node *node, uint64_t *out)
{
    return conf_size_range(doc, node, 0, UINT64_MAX, out);
}

int conf_size_range(struct conf_doc *doc, const struct conf_node *node, uint64_t min, uint64_t max, uint64_t *out)
{
    char s[SHOW_CAP], lo[32], hi[32];
    uint64_t v = 0;
    int rc;
    if (!node)
        return RP_OK;
    if (expect_scalar(doc, node, "a size") != RP_OK)
        return RP_ERR;
    rc = parse_size(node->value, &v);
    if (rc == -1) {
        conf_error(doc, node, "bad size \"%s\": expected a number optionally followed by k, m or g",
                   show(node->value, s, sizeof s));
        return RP_ERR;
    }
    if (rc == -2) {
        conf_error(doc, node, "size \"%s\" is too large", show(node->value, s, sizeof s));
        return RP_ERR;
    }
    if (v < min || v > max) {
        format_size(lo, sizeof lo, min);
        format_size(hi, sizeof hi, max);
        conf_error(doc, node, "size \"%s\" is out of range (allowed %s..%s)", show(node->value, s, sizeof s), lo, hi);
        return RP_ERR;
    }
    *out = v;
    return RP_OK;
}

/* ---- addresses ---------------------------------------------------------- */

#define ADDR_MAX_HOST 253 /* longest DNS name */

/* Resolve host (numeric first; names through getaddrinfo, once, at load).
 * A name with both families yields its IPv4 address: upstream model
 * servers commonly listen on 127.0.0.1 only, while "localhost" often
 * resolves to ::1 first. */
static int resolve(const char *host, bool v6_only, uint16_t port, struct sockaddr_storage *out, socklen_t *len,
                   char *why, size_t whycap)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    struct addrinfo hints, *res = NULL, *pick = NULL;
    char s[SHOW_CAP];
    int rc, ret = RP_ERR;

    memset(out, 0, sizeof(*out));
    if (!v6_only && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof(*sin);
        return RP_OK;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
        return RP_OK;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = v6_only ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* Inside brackets only a numeric IPv6 address (with a scope) is valid. */
    hints.ai_flags = v6_only ? AI_NUMERICHOST : 0;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        if (v6_only)
            rp_snprintf(why, whycap, "\"%s\" is not an IPv6 address", show(host, s, sizeof s));
        else
            rp_snprintf(why, whycap, "cannot resolve \"%s\": %s", show(host, s, sizeof s),
                        rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        goto cleanup;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && !pick)
            pick = ai;
    }
    for (struct addrinfo *ai = res; ai && !pick; ai = ai->ai_next)
        if (ai->ai_family == AF_INET6)
            pick = ai;
    if (!pick || pick->ai_addrlen > sizeof(*out)) {
        rp_snprintf(why, whycap, "\"%s\" has no IPv4 or IPv6 address", show(host, s, sizeof s));
        goto cleanup;
    }
    memcpy(out, pick->ai_addr, pick->ai_addrlen);
    *len = (socklen_t)pick->ai_addrlen;
    if (pick->ai_family == AF_INET)
        sin->sin_port = htons(port);
    else
        sin6->sin6_port = htons(port);
    ret = RP_OK;
cleanup:
    if (res)
        freeaddrinfo(res);
    return ret;
}

int conf_parse_addr(const char *s, struct sockaddr_storage *out, socklen_t *len, char *why, size_t whycap)
{
    char host[ADDR_MAX_HOST + 1];
    const char *colon, *hs, *port_s;
    size_t hlen;
    bool bracket = false;
    uint64_t port = 0;
    const char *end = NULL;

    if (!s || !*s) {
        rp_snprintf(why, whycap, "empty address");
        return RP_ERR;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) {
            rp_snprintf(why, whycap, "missing ']' after IPv6 address");
            return RP_ERR;
        }
        if (rb[1] == '\0') {
            rp_snprintf(why, whycap, "port required");
            return RP_ERR;
        }
        if (rb[1] != ':') {
            rp_snprintf(why, whycap, "expected ':' and a port after ']'");
            return RP_ERR;
        }
        bracket = true;
        hs = s + 1;
        hlen = (size_t)(rb - hs);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            rp_snprintf(why, whycap, "port required");
            return RP_ERR;
        }
        if (memchr(s, ':', (size_t)(colon - s))) {
            rp_snprintf(why, whycap, "IPv6 addresses need brackets, e.g. [::1]:8080");
            return RP_ERR;
        }
        hs = s;
        hlen = (size_t)(colon - s);
    }
    port_s = colon + 1;
    if (!*port_s) {
        rp_snprintf(why, whycap, "port required");
        return RP_ERR;
    }
    if (parse_u64(port_s, &end, &port) != 0 || *end || port < 1 || port > 65535) {
        rp_snprintf(why, whycap, "port must be a number from 1 to 65535");
        return RP_ERR;
    }
    if (hlen > ADDR_MAX_HOST) {
        rp_snprintf(why, whycap, "host name too long (max %d characters)", ADDR_MAX_HOST);
        return RP_ERR;
    }
    if (bracket && hlen == 0) {
        rp_snprintf(why, whycap, "empty IPv6 address");
        return RP_ERR;
    }
    /* "*:80" and ":80" mean every IPv4 interface, as in most servers. */
    if (hlen == 0 || (hlen == 1 && hs[0] == '*'))
        snprintf(host, sizeof host, "0.0.0.0");
    else
        snprintf(host, sizeof host, "%.*s", (int)hlen, hs);
    return resolve(host, bracket, (uint16_t)port, out, len, why, whycap);
}

int conf_addr(struct conf_doc *doc, const struct conf_node *node, struct sockaddr_storage *out, socklen_t *len)
{
    char s[SHOW_CAP], why[512];
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (!node)
        return RP_OK;
    if (expect_scalar(doc, node, "an address (host:port)") != RP_OK)
        return RP_ERR;
    if (conf_parse_addr(node->value, &ss, &sl, why, sizeof why) != RP_OK) {
        conf_error(doc, node, "bad address \"%s\": %s", show(node->value, s, sizeof s), why);
        return RP_ERR;
    }
    *out = ss;
    *len = sl;
    return RP_OK;
}

int conf_fraction(struct conf_doc *doc, const struct conf_node *node, double max, double *out)
{
    if (!node)
        return RP_OK;
    if (node->kind == CONF_SCALAR && node->value) {
        size_t len = strlen(node->value);
        if (len > 1 && node->value[len - 1] == '%') {
            char *end = NULL;
            double v = strtod(node->value, &end);
            if (end != node->value + len - 1 || !(v >= 0.0 && v <= max * 100.0)) {
                conf_error(doc, node, "expected a percentage between 0%% and %g%%", max * 100.0);
                return RP_ERR;
            }
            *out = v / 100.0;
            return RP_OK;
        }
    }
    return conf_double(doc, node, 0.0, max, out);
}

int conf_enum(struct conf_doc *doc, const struct conf_node *node, const char *const *names, int *out)
{
    char s[SHOW_CAP], list[512];
    if (!node)
        return RP_OK;
    if (expect_scalar(doc, node, "a value") != RP_OK)
        return RP_ERR;
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], node->value) == 0) {
            *out = i;
            return RP_OK;
        }
    }
    join_names(names, list, sizeof list);
    conf_error(doc, node, "bad value \"%s\" (expected one of: %s)", show(node->value, s, sizeof s), list);
    return RP_ERR;
}

/* ---- table-driven sections ---------------------------------------------- */

static void field_store_uint(void *base, const struct conf_field *f, uint64_t v)
{
    char *p = (char *)base + f->offset;
    switch (f->size) {
    case 1: {
        uint8_t x = (uint8_t)v;
        memcpy(p, &x, 1);
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)v;
        memcpy(p, &x, 2);
        break;
    }
    case 4: {
        uint32_t x = (uint32_t)v;
        memcpy(p, &x, 4);
        break;
    }
    default: memcpy(p, &v, 8); break;
    }
}

static uint64_t field_load_uint(const void *base, const struct conf_field *f)
{
    const char *p = (const char *)base + f->offset;
    switch (f->size) {
    case 1: {
        uint8_t x;
        memcpy(&x, p, 1);
        return x;
    }
    case 2: {
        uint16_t x;
        memcpy(&x, p, 2);
        return x;
    }
    case 4: {
        uint32_t x;
        memcpy(&x, p, 4);
        return x;
    }
    default: {
        uint64_t x;
        memcpy(&x, p, 8);
        return x;
    }
    }
}

/* The row's recorded member size matches what its kind stores: a row
 * written against the wrong member type would overwrite its neighbour. */
static bool field_size_ok(const struct conf_field *f)
{
    switch (f->kind) {
    case CONF_F_BOOL: return f->size == sizeof(bool);
    case CONF_F_DOUBLE:
    case CONF_F_FRACTION: return f->size == sizeof(double);
    case CONF_F_ENUM: return f->size == sizeof(int);
    case CONF_F_UINT: return f->size == 1 || f->size == 2 || f->size == 4 || f->size == 8;
    case CONF_F_DURATION: return f->size == sizeof(uint64_t);
    case CONF_F_SIZE: return f->size == 4 || f->size == 8;
    case CONF_F_STRBUF: return f->size > 0;
    default: return true;
    }
}

void conf_fields_defaults(const struct conf_field *fields, void *base)
{
    for (const struct conf_field *f = fields; f->key; f++) {
        RP_ASSERT(field_size_ok(f));
        if (!field_size_ok(f))
            continue;
        char *p = (char *)base + f->offset;
        switch (f->kind) {
        case CONF_F_BOOL: {
            bool b = f->def != 0;
            memcpy(p, &b, sizeof b);
            break;
        }
        case CONF_F_UINT:
        case CONF_F_DURATION:
        case CONF_F_SIZE: field_store_uint(base, f, f->def); break;
        case CONF_F_DOUBLE:
        case CONF_F_FRACTION: memcpy(p, &f->ddef, sizeof f->ddef); break;
        case CONF_F_ENUM: {
            int e = (int)f->def;
            memcpy(p, &e, sizeof e);
            break;
        }
        case CONF_F_STRBUF:
            if (f->size) {
                const char *d = f->sdef ? f->sdef : "";
                size_t n = strlen(d);
                if (n >= f->size)
                    n = f->size - 1;
                memcpy(p, d, n);
                p[n] = '\0';
            }
            break;
        default: break;
        }
    }
}

const struct conf_field *conf_field_find(const struct conf_field *fields, const char *key)
{
    for (const struct conf_field *f = fields; f->key; f++)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static int field_parse(struct conf_doc *doc, const struct conf_node *n, const struct conf_field *f, void *base)
{
    char *p = (char *)base + f->offset;
    RP_ASSERT(field_size_ok(f));
    if (!field_size_ok(f))
        return RP_ERR;
    switch (f->kind) {
    case CONF_F_BOOL: {
        bool b;
        memcpy(&b, p, sizeof b);
        int rc = conf_bool(doc, n, &b);
        memcpy(p, &b, sizeof b);
        return rc;
    }
    case CONF_F_UINT: {
        uint64_t v = field_load_uint(base, f);
        int rc = conf_uint(doc, n, f->min, f->max, &v);
        if (rc == RP_OK)
            field_store_uint(base, f, v);
        return rc;
    }
    case CONF_F_DURATION: {
        uint64_t v = field_load_uint(base, f);
        int rc = conf_duration_range(doc, n, f->min, f->max, &v);
        if (rc == RP_OK && v < f->floor) {
            /* The value stays what it was: checks across keys then judge
             * values that were accepted. */
            conf_error(doc, n, "%s is too short", f->key);
            return RP_ERR;
        }
        if (rc == RP_OK)
            field_store_uint(base, f, v);
        return rc;
    }
    case CONF_F_FRACTION: {
        double d;
        memcpy(&d, p, sizeof d);
        int rc = conf_fraction(doc, n, f->dmax, &d);
        memcpy(p, &d, sizeof d);
        return rc;
    }
    case CONF_F_SIZE: {
        uint64_t v = field_load_uint(base, f);
        int rc = conf_size_range(doc, n, f->min, f->max, &v);
        if (rc == RP_OK)
            field_store_uint(base, f, v);
        return rc;
    }
    case CONF_F_DOUBLE: {
        double d;
        memcpy(&d, p, sizeof d);
        int rc = conf_double(doc, n, f->dmin, f->dmax, &d);
        memcpy(p, &d, sizeof d);
        return rc;
    }
    case CONF_F_ENUM: {
        int e;
        memcpy(&e, p, sizeof e);
        int rc = conf_enum(doc, n, f->names, &e);
        memcpy(p, &e, sizeof e);
        return rc;
    }
    case CONF_F_STRBUF: {
        const char *v = NULL;
        if (conf_string(doc, n, &v) != RP_OK)
            return RP_ERR;
        size_t len = strlen(v);
        if (len < f->min) {
            conf_error(doc, n, f->min == 1 ? "must not be empty" : "too short (at least %llu bytes)",
                       (unsigned long long)f->min);
            return RP_ERR;
        }
        if (len >= f->size) {
            conf_error(doc, n, "too long (at most %zu bytes)", f->size - 1);
            return RP_ERR;
        }
        memcpy(p, v, len + 1);
        return RP_OK;
    }
    case CONF_F_CUSTOM: return f->parse ? f->parse(doc, n, base) : RP_OK;
    default: return RP_OK;
    }
}

int conf_fields_parse(struct conf_doc *doc, const struct conf_node *node, const struct conf_field *fields, void *base)
{
    if (!node)
        return RP_OK;
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    const char *keys[128];
    size_t nk = 0;
    for (const struct conf_field *f = fields; f->key; f++) {
        RP_ASSERT(nk + 1 < RP_ARRAY_LEN(keys));
        if (nk + 1 < RP_ARRAY_LEN(keys))
            keys[nk++] = f->key;
    }
    keys[nk] = NULL;
    int rc = conf_check_keys(doc, node, keys) > 0 ? RP_ERR : RP_OK;
    for (const struct conf_field *f = fields; f->key; f++) {
        const struct conf_node *n = conf_get(node, f->key);
        if (n && field_parse(doc, n, f, base) != RP_OK)
            rc = RP_ERR;
    }
    return rc;
}
