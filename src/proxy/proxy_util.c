/*
 * proxy_util.c — the proxy's pure helpers.  See proxy_util.h.
 */
#include "proxy_util.h"

#include <string.h>

#include "util.h"

int proxy_status_class(int status)
{
    if (status >= 100 && status < 600)
        return status / 100 - 1;
    return PROXY_STATUS_CLASSES - 1;
}

int64_t proxy_since(uint64_t t, uint64_t from)
{
    return t && from && t >= from ? (int64_t)(t - from) : -1;
}

bool proxy_valid_request_id(struct h1_str v)
{
    if (v.len == 0 || v.len > 64)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char ch = v.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

bool proxy_named_in_connection(const struct h1_message *m, struct h1_str name)
{
    if (!m->conn_flags && !h1_find_header(m, "connection"))
        return false;
    char tok[64];
    if (name.len >= sizeof tok)
        return false;
    memcpy(tok, name.p, name.len);
    tok[name.len] = '\0';
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct h1_header *h = &m->headers[i];
        if (rp_strieq(h->name.p, h->name.len, "connection") && h1_list_has_token(h->value, tok))
            return true;
    }
    return false;
}

bool proxy_announces_body(const struct h1_message *m)
{
    if (h1_find_header(m, "transfer-encoding"))
        return true;
    const struct h1_header *cl = h1_find_header(m, "content-length");
    return cl && !(cl->value.len == 1 && cl->value.p[0] == '0');
}
