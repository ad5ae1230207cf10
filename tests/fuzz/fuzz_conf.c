/*
 * fuzz_conf.c — the YAML loader (conf.c) and the whole configuration
 * schema (config.c and every section parser it calls) on arbitrary bytes,
 * loaded from memory exactly as conf_load_file() loads a file's contents.
 * Must never crash or leak, whatever the document.
 *
 * Two things would make runs slow or non-deterministic, so they are
 * pinned here: host names resolve without DNS (getaddrinfo below knows
 * only "localhost"), and stdin is /dev/null, so a key_file: /dev/stdin
 * reads nothing instead of hanging.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

static struct sockaddr_in lo_addr;
static struct addrinfo lo_ai;

/* Overrides libc's: every name but "localhost" is unknown. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    (void)service;
    if (!node || strcmp(node, "localhost") != 0 || (hints && (hints->ai_flags & AI_NUMERICHOST)) ||
        (hints && hints->ai_family == AF_INET6))
        return EAI_NONAME;
    lo_addr.sin_family = AF_INET;
    lo_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lo_ai.ai_family = AF_INET;
    lo_ai.ai_socktype = SOCK_STREAM;
    lo_ai.ai_addr = (struct sockaddr *)&lo_addr;
    lo_ai.ai_addrlen = sizeof lo_addr;
    lo_ai.ai_next = NULL;
    *res = &lo_ai;
    return 0;
}

void freeaddrinfo(struct addrinfo *res)
{
    (void)res; /* static */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!freopen("/dev/null", "r", stdin))
        abort();
    return 0;
}

static struct config cfg; /* large: not on the stack */

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct conf_doc *doc = conf_load_string("fuzz.yaml", (const char *)data, size);
    int rc = config_load_doc(doc, &cfg);
    size_t n = conf_error_count(doc);
    if ((rc == RP_OK) != (n == 0))
        abort();
    for (size_t i = 0; i < n && i < CONF_MAX_ERRORS; i++) {
        const char *e = conf_error_at(doc, i);
        if (!e || strncmp(e, "fuzz.yaml:", 10) != 0 || strchr(e, '\n'))
            abort();
    }
    if (rc == RP_OK) {
        if (cfg.num_listen == 0 || cfg.num_upstreams == 0)
            abort();
        for (size_t i = 0; i < 4; i++)
            (void)config_route(&cfg, "/v1/chat/completions", 20);
    }
    config_free(&cfg);
    conf_free(doc);
    return 0;
}
