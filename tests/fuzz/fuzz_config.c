/*
 * fuzz_config.c - libFuzzer target: arbitrary bytes as a configuration
 * file. config_load() must either succeed or report errors, never crash,
 * and leave nothing allocated either way (LeakSanitizer checks).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../engine/config.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/sluice-fuzz-config-XXXXXX";
	struct config_errors errs = { 0 };
	struct config cfg;
	int fd;

	fd = mkstemp(path);
	if (fd < 0)
		abort();
	if (write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (config_load(&cfg, path, NULL, 0, NULL, &errs) == 0)
		config_free(&cfg);
	config_errors_free(&errs);
	unlink(path);
	return 0;
}
