/*
 * fuzz_status_api.c — validation of the admin API's incident and
 * maintenance bodies (status_api_parse) on arbitrary bytes, for every
 * request kind.  Byte 0 picks the kind; the rest is the body.
 *
 * Beyond "no crash, no leak": a valid request stays within the documented
 * bounds, and an error always renders as valid JSON (jansson parses it
 * back), since it goes to the client verbatim and quotes its input.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "status_api.h"
#include "util.h"

static const char *const ids[] = {"chat", "embeddings", "d4x2k9"};
static const char *const names[] = {"Chat API", "Embeddings", "Éditeur — ü"};
static const struct status_api_components comps = {3, ids, names};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1)
        return 0;
    enum status_api_kind kind = (enum status_api_kind)(data[0] % (STATUS_API_UPDATE_EDIT + 1));
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    const int64_t now_ms = 1767225600000LL; /* 2026-01-01 */
    struct status_api_req req;
    struct status_api_error err;
    memset(&req, 0, sizeof req);
    memset(&err, 0, sizeof err);

    int rc = status_api_parse(kind, body, n, &comps, now_ms, &req, &err);
    if (rc == RP_OK) {
        if ((req.name && strlen(req.name) > STATUS_API_NAME_MAX) ||
            (req.body && strlen(req.body) > STATUS_API_BODY_MAX) || req.num_components > STATUS_API_COMPONENTS_MAX)
            abort();
        for (size_t i = 0; i < req.num_components; i++)
            if (req.comp[i] < 0 || req.comp[i] >= 3)
                abort();
        status_api_req_free(&req);
        return 0;
    }
    if (rc != RP_ERR || err.http < 400 || err.http > 599 || !memchr(err.message, '\0', sizeof err.message) ||
        !memchr(err.param, '\0', sizeof err.param) || !memchr(err.code, '\0', sizeof err.code))
        abort();
    struct sbuf out;
    sbuf_init(&out, 1 << 16);
    status_api_error_json(&out, &err);
    json_error_t jerr;
    json_t *j = json_loadb(out.data, out.len, 0, &jerr);
    if (!j || out.truncated)
        abort();
    json_decref(j);
    sbuf_free(&out);
    status_api_req_free(&req);
    return 0;
}
