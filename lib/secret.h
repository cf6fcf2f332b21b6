/*
 * secret.h - files that hold secrets: private keys, passwords, password
 * hashes. One place decides what such a file must be (a regular file that
 * the wrong people cannot read or change) and says so the same way for
 * every kind: "key file /etc/sluice/dkim.key has mode 0644: group or
 * others may read or change it (chmod 600 it)".
 */
#ifndef SLUICE_SECRET_H
#define SLUICE_SECRET_H

#include <stddef.h>
#include <sys/stat.h>

/* Who may not have access: for keys and passwords, and for users files. */
#define SECRET_OWNER_ONLY	(S_IRWXG | S_IRWXO)
#define SECRET_NOT_OTHERS	(S_IROTH | S_IWOTH)

/*
 * Open path for reading after checking it is a regular file none of whose
 * forbid mode bits are set. what names the kind in messages ("key file").
 * The descriptor, or -1 with the reason (naming the file) in why.
 */
int secret_open(const char *path, const char *what, unsigned forbid,
    char *why, size_t whylen);

/*
 * secret_open(), then the whole file, at most max bytes, into a malloc'd
 * NUL-terminated buffer (*lenp bytes): free it with secret_free(). NULL
 * with why on any failure.
 */
char *secret_read(const char *path, const char *what, unsigned forbid,
    size_t max, size_t *lenp, char *why, size_t whylen);

/* Wipe and free what secret_read() returned (NULL is fine). */
void secret_free(char *buf, size_t len);

#endif
