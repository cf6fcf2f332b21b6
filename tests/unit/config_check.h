/*
 * config_check.h - what the configuration loader's unit tests share: YAML
 * written to a temporary file, config_load() on it with -o options and
 * environment variables (checking the loader's contract on the way), and
 * its errors compared with the expected list, "@" standing for the file's
 * name. Needs check.h first.
 */
#ifndef SLUICE_CONFIG_CHECK_H
#define SLUICE_CONFIG_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../engine/config.h"

static char check_tmp_path[64];

/* Write text to a fresh temporary file; its name is in check_tmp_path. */
static inline const char *
check_write_tmp(const char *text, size_t len)
{
	int fd;

	snprintf(check_tmp_path, sizeof check_tmp_path, "/tmp/t_config.XXXXXX");
	fd = mkstemp(check_tmp_path);
	CHECK_FATAL(fd >= 0);
	CHECK_FATAL(write(fd, text, len) == (ssize_t)len);
	CHECK_FATAL(close(fd) == 0);
	return check_tmp_path;
}

/* Replace each "@" in want by file. */
static inline void
check_expand(const char *want, const char *file, char *out, size_t len)
{
	size_t o = 0;

	for (; *want != '\0' && o + 1 < len; want++) {
		if (*want == '@') {
			size_t n = strlen(file);

			if (n > len - 1 - o)
				n = len - 1 - o;
			memcpy(out + o, file, n);
			o += n;
		} else {
			out[o++] = *want;
		}
	}
	out[o] = '\0';
}

/* errs must hold exactly want[] (NULL-terminated), in that order. */
static inline void
check_errors(const struct config_errors *errs, const char *file,
    const char *const *want)
{
	char buf[1024];
	size_t i, n = 0;
	bool ok;

	while (want[n] != NULL)
		n++;
	ok = errs->n == n;
	for (i = 0; i < n && i < errs->n; i++) {
		check_expand(want[i], file, buf, sizeof buf);
		if (strcmp(errs->msg[i], buf) != 0)
			ok = false;
	}
	if (ok)
		return;
	fprintf(stderr, "  errors differ; got %zu:\n", errs->n);
	for (i = 0; i < errs->n; i++)
		fprintf(stderr, "    %s\n", errs->msg[i]);
	fprintf(stderr, "  expected %zu:\n", n);
	for (i = 0; i < n; i++) {
		check_expand(want[i], file, buf, sizeof buf);
		fprintf(stderr, "    %s\n", buf);
	}
	CHECK(ok);
}

/*
 * Load yaml (NULL: embedded default) with overrides and environment,
 * appending to errs. Returns config_load()'s result; the file's name in
 * *file (check_tmp_path, or NULL for the embedded default).
 */
static inline int
check_load(struct config *cfg, struct config_errors *errs,
    const char *yaml, const char *const *ovr, const char *const *env,
    const char **file)
{
	size_t novr = 0;
	const char *path = NULL;
	int n;

	while (ovr != NULL && ovr[novr] != NULL)
		novr++;
	if (yaml != NULL)
		path = check_write_tmp(yaml, strlen(yaml));
	n = config_load(cfg, path, (char *const *)ovr, novr, (char *const *)env,
	    errs);
	if (path != NULL)
		unlink(path);
	if (file != NULL)
		*file = path;
	/* The contract: the count is what was appended, cfg freed on error. */
	CHECK((size_t)n == errs->n);
	if (n > 0)
		CHECK(cfg->source == NULL && cfg->listen == NULL &&
		    cfg->spool == NULL);
	return n;
}

#endif
