/*
 * admin_token.c — parsing and reading the admin token file (admin_token.h).
 *
 * The token is a secret: no message quotes its bytes, and every copy made
 * while reading is wiped.
 */
#include "admin_token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "util.h"

/* Surrounding whitespace is never part of a token: editors and `echo` add
 * a newline, and a pasted token often carries spaces. */
static bool token_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

int admin_token_parse(const char *buf, size_t len, size_t *start, size_t *tlen, char *why, size_t whycap)
{
    size_t a = 0, b = len;

    while (b > a && token_space(buf[b - 1]))
        b--;
    while (a < b && token_space(buf[a]))
        a++;
    if (a == b) {
        rp_snprintf(why, whycap, "empty");
        return RP_ERR;
    }
    for (size_t i = a; i < b; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            rp_snprintf(why, whycap, "the token contains whitespace or non-printable bytes");
            return RP_ERR;
        }
    }
    /* Short tokens are the hand-typed ones ("changeme", "admin123") a
     * guesser tries first; 16 random characters are beyond online
     * guessing.  The message gives the length, never the bytes. */
    if (b - a < ADMIN_TOKEN_MIN) {
        rp_snprintf(why, whycap, "the token is %zu characters, at least %d are required", b - a, ADMIN_TOKEN_MIN);
        return RP_ERR;
    }
    *start = a;
    *tlen = b - a;
    return RP_OK;
}

/* Read up to cap bytes into buf; *len is how many were read.  RP_ERR with
 * errno set on a read error. */
static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
    *len = 0;
    while (*len < cap) {
        ssize_t n = read(fd, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return RP_ERR;
        if (n == 0)
            break;
        *len += (size_t)n;
    }
    return RP_OK;
}

int admin_token_read(const char *path, char **out, size_t *out_len, char *why, size_t whycap)
{
    char shown[CONF_SHOW_PATH_CAP], reason[160];
    char *buf = NULL;
    struct stat st;
    size_t len = 0, start = 0, tlen = 0;
    int rc = RP_ERR;
    /* O_NONBLOCK: a FIFO must not hang start-up (or `rampart -t`). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    conf_show_path(path, shown, sizeof shown);
    if (fd < 0) {
        rp_snprintf(why, whycap, "cannot read token file \"%s\": %s", shown, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        rp_snprintf(why, whycap, "cannot read token file \"%s\": %s", shown, strerror(errno));
        goto close_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        rp_snprintf(why, whycap, "token file \"%s\" is not a regular file", shown);
        goto close_fd;
    }
    /* Refused, not warned about, as ssh does for private keys: a warning
     * in a start-up log is read after the token has leaked. */
    if (st.st_mode & 0077) {
        rp_snprintf(why, whycap, "token file \"%s\" has mode %04o: group and others must have no access (chmod 600 it)",
                    shown, (unsigned)(st.st_mode & 07777));
        goto close_fd;
    }
    if (st.st_size > ADMIN_TOKEN_MAX) {
        rp_snprintf(why, whycap, "token file \"%s\" is larger than %d bytes", shown, ADMIN_TOKEN_MAX);
        goto close_fd;
    }
    /* One byte more than allowed: a file that grew after fstat is caught. */
    buf = rp_xmalloc(ADMIN_TOKEN_MAX + 1);
    if (read_all(fd, buf, ADMIN_TOKEN_MAX + 1, &len) != RP_OK) {
        rp_snprintf(why, whycap, "cannot read token file \"%s\": %s", shown, strerror(errno));
        goto free_buf;
    }
    if (len > ADMIN_TOKEN_MAX) {
        rp_snprintf(why, whycap, "token file \"%s\" is larger than %d bytes", shown, ADMIN_TOKEN_MAX);
        goto free_buf;
    }
    if (admin_token_parse(buf, len, &start, &tlen, reason, sizeof reason) != RP_OK) {
        rp_snprintf(why, whycap, "token file \"%s\": %s", shown, reason);
        goto free_buf;
    }
    if (out) {
        /* An exact-size copy, so wiping out_len + 1 bytes on free wipes it
         * all; the read buffer is wiped below. */
        *out = rp_xstrndup(buf + start, tlen);
        *out_len = tlen;
    }
    rc = RP_OK;

free_buf:
    if (buf) {
        explicit_bzero(buf, ADMIN_TOKEN_MAX + 1);
        free(buf);
    }
close_fd:
    close(fd);
done:
    return rc;
}

/* Equal in time that depends only on the expected token's length, not on
 * where the first difference is. */
