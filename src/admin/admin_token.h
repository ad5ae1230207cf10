/*
 * admin_token.h — the admin token file: its rules, and reading it.
 *
 * Kept apart from the listener because the configuration check
 * (`rampart -t`, config.c) reads the token file too, and must not depend
 * on the listener to do it.
 */
#ifndef RP_ADMIN_TOKEN_H
#define RP_ADMIN_TOKEN_H

#include <stddef.h>

/* Token file rules (docs/configuration.md): surrounding whitespace is
 * trimmed; what is left is ADMIN_TOKEN_MIN..ADMIN_TOKEN_MAX printable
 * ASCII characters without spaces. */
#define ADMIN_TOKEN_MIN 16
#define ADMIN_TOKEN_MAX 4096

/* The token inside a token file's contents buf[len]: RP_OK with its offset
 * and length in *start and *tlen, or RP_ERR with the reason in why[whycap]
 * (never quoting the bytes: they may be most of a secret). */
int admin_token_parse(const char *buf, size_t len, size_t *start, size_t *tlen, char *why, size_t whycap);
/* Open, check and parse the token file at path: a regular file, with no
 * access for group or others, at most ADMIN_TOKEN_MAX bytes, holding a
 * token admin_token_parse() accepts.  RP_OK with a malloc'd copy in *out
 * and its length in *out_len (out may be NULL: check only), or RP_ERR with
 * a message naming the file in why[whycap].  The caller wipes *out. */
int admin_token_read(const char *path, char **out, size_t *out_len, char *why, size_t whycap);

#endif
