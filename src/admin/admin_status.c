/*
 * admin_status.c — routes the admin API's incident and maintenance
 * requests to the status subsystem (see admin_status.h).
 *
 * Only paths and methods are decided here: which collection, which
 * incident or update, and which operation; a wrong path is 404, a wrong
 * method 405 with Allow.  Bodies, ids and the store are status_ops_*'s.
 */
#include "admin_status.h"
#include "h1.h"
#include "status.h"
#include "util.h"

#include <string.h>

static const char inc_prefix[] = "/api/v1/incidents";
static const char maint_prefix[] = "/api/v1/maintenances";

static bool method_is(const struct httpd_request *req, const char *m)
{
    size_t n = strlen(m);
    return req->msg->method.len == n && memcmp(req->msg->method.p, m, n) == 0;
}

static void not_found(struct httpd_response *resp)
{
    httpd_json_error_code(resp, 404, "invalid_request_error", "not_found", "no such resource");
}

static void not_allowed(struct httpd_response *resp, const char *allow, const char *message)
{
    httpd_json_error_code(resp, 405, "invalid_request_error", "method_not_allowed", message);
    httpd_add_header(resp, "Allow", allow);
}

/* Path segments after the collection prefix: "", "/ID", "/ID/updates",
 * "/ID/updates/UID". */
void admin_status_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
    struct status *st = arg;
    const char *p = req->path.p;
    size_t len = req->path.len;
    bool maint;
    size_t plen;
    if (len >= sizeof maint_prefix - 1 && memcmp(p, maint_prefix, sizeof maint_prefix - 1) == 0) {
        maint = true;
        plen = sizeof maint_prefix - 1;
    } else if (len >= sizeof inc_prefix - 1 && memcmp(p, inc_prefix, sizeof inc_prefix - 1) == 0) {
        maint = false;
        plen = sizeof inc_prefix - 1;
    } else {
        not_found(resp);
        return;
    }
    const char *rest = p + plen;
    size_t rlen = len - plen;
    if (rlen && rest[0] != '/') {
        not_found(resp);
        return;
    }
    /* Split into at most three segments. */
    const char *seg[3] = {NULL, NULL, NULL};
    size_t seglen[3] = {0, 0, 0};
    int nseg = 0;
    size_t i = 0;
    while (i < rlen) {
        while (i < rlen && rest[i] == '/')
            i++;
        if (i >= rlen)
            break;
        if (nseg == 3) {
            not_found(resp);
            return;
        }
        seg[nseg] = rest + i;
        while (i < rlen && rest[i] != '/')
            i++;
        seglen[nseg] = (size_t)(rest + i - seg[nseg]);
        nseg++;
    }
    bool get = method_is(req, "GET") || method_is(req, "HEAD");
    bool post = method_is(req, "POST");
    bool patch = method_is(req, "PATCH");

    if (nseg == 0) {
        if (get)
            status_ops_list(st, maint, resp);
        else if (post)
            status_ops_create(st, maint, req->body, req->body_len, resp);
        else
            not_allowed(resp, "GET, HEAD, POST", "use GET to list or POST to create");
        return;
    }
    if (nseg == 1) {
        if (get)
            status_ops_get(st, maint, seg[0], seglen[0], resp);
        else if (patch)
            status_ops_edit(st, maint, seg[0], seglen[0], req->body, req->body_len, resp);
        else
            not_allowed(resp, "GET, HEAD, PATCH", "use GET to read or PATCH to edit");
        return;
    }
    if (seglen[1] != 7 || memcmp(seg[1], "updates", 7) != 0) {
        not_found(resp);
        return;
    }
    if (nseg == 2) {
        if (post)
            status_ops_add_update(st, maint, seg[0], seglen[0], req->body, req->body_len, resp);
        else
            not_allowed(resp, "POST", "use POST to add an update");
        return;
    }
    if (patch)
        status_ops_edit_update(st, maint, seg[0], seglen[0], seg[2], seglen[2], req->body, req->body_len, resp);
    else
        not_allowed(resp, "PATCH", "use PATCH to edit an update's body");
}

void admin_status_request(struct status *st, const char *method, const char *path, const char *body,
                          struct httpd_response *resp)
{
    struct h1_message msg;
    struct httpd_request req;
    memset(&msg, 0, sizeof msg);
    memset(&req, 0, sizeof req);
    msg.method.p = method;
    msg.method.len = strlen(method);
    msg.target.p = path;
    msg.target.len = strlen(path);
    req.msg = &msg;
    const char *q = strchr(path, '?');
    req.path.p = path;
    req.path.len = q ? (size_t)(q - path) : strlen(path);
    req.query.p = q ? q + 1 : "";
    req.query.len = q ? strlen(q + 1) : 0;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.peer = "test";
    resp->status = 200;
    resp->content_type = NULL;
    admin_status_handler(st, &req, resp);
}
