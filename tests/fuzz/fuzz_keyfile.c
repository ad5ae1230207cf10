/*
 * fuzz_keyfile.c — the readers of secret files named by the configuration:
 * the admin token file (admin_token_parse, and admin_token_read on a real
 * file) and a tenant's key_file (one API key per line, read while the
 * tenants section is parsed).
 *
 * The input is the file's contents.  The parser must never read outside
 * the buffer, must return a token inside it that obeys the documented
 * rules, and the file reader must reach the same verdict and token as the
 * parser on the same bytes.  The tenant key file goes through the real
 * configuration loader (tenant.c reads it from a path).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin_token.h"
#include "config.h"
#include "util.h"

static char path[64];
static char yaml[512];
static struct config cfg;
static int memfd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A memory file, reopened by path through /proc: a file on disk made
     * every run wait on the file system (under 200 runs a second). */
    memfd = memfd_create("rp-fuzz-keyfile", MFD_CLOEXEC);
    if (memfd < 0 || fchmod(memfd, 0600) < 0)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    snprintf(yaml, sizeof yaml,
             "listen: 127.0.0.1:8080\n"
             "upstreams: {chat: {servers: [127.0.0.1:9001]}}\n"
             "tenants:\n"
             "  identify: api_key\n"
             "  list:\n"
             "    - {name: acme, key_file: %s}\n",
             path);
    return 0;
}

static void write_file(const unsigned char *data, size_t size)
{
    if (ftruncate(memfd, 0) < 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *buf = (const char *)data;
    char why[512], why2[1024];
    size_t start = 0, len = 0;

    int rc = admin_token_parse(buf, size, &start, &len, why, sizeof why);
    if (rc == RP_OK) {
        if (start + len > size || len < ADMIN_TOKEN_MIN)
            abort();
        for (size_t i = start; i < start + len; i++)
            if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f)
                abort();
    } else if (rc != RP_ERR || !memchr(why, '\0', sizeof why)) {
        abort();
    }

    write_file(data, size);
    char *tok = NULL;
    size_t tlen = 0;
    int rc2 = admin_token_read(path, &tok, &tlen, why2, sizeof why2);
    bool fits = size <= ADMIN_TOKEN_MAX;
    if ((rc2 == RP_OK) != (rc == RP_OK && fits))
        abort();
    if (rc2 == RP_OK) {
        if (tlen != len || memcmp(tok, buf + start, len) != 0 || tok[len] != '\0')
            abort();
        explicit_bzero(tok, tlen);
        free(tok);
    }

    /* The tenant key file: whatever the bytes, a clean verdict.  One input
     * in eight (chosen by its first byte, so a crash reproduces): a load
     * wipes tenant.c's 1 MiB read buffer, about a millisecond per run, and
     * would hold the admin parser above to a few hundred runs a second. */
    if (size == 0 || (data[0] & 7) != 0)
        return 0;
    struct conf_doc *doc = conf_load_string("fuzz.yaml", yaml, strlen(yaml));
    if (config_load_doc(doc, &cfg) == RP_OK && (cfg.tenants.nentries != 1 || cfg.tenants.entries[0].nkeys == 0))
        abort();
    config_free(&cfg);
    conf_free(doc);
    return 0;
}
