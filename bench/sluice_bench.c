/*
 * sluice_bench.c - sluice-bench: measure any SMTP or LMTP relay.
 *
 *   sluice-bench source --to HOST:PORT [options]   drive a server
 *   sluice-bench sink --listen ADDR:PORT [options] be the next hop
 *   sluice-bench dkim-speed [options]              DKIM signatures/s
 *   sluice-bench tls-handshake [options]           TLS handshakes alone
 *   sluice-bench log-sync --dir DIR [options]      a busy log vs. fdatasync
 *   sluice-bench seg-sync --dir DIR [options]      appended vs. allocated
 *
 * See `sluice-bench source --help`, `sluice-bench sink --help` and the
 * README. Exit status: 0 done, 1 failed, 2 usage error.
 */
#include <stdio.h>
#include <string.h>

#include "../lib/version.h"
#include "bench.h"

static const char usage_text[] =
    "usage: sluice-bench source --to HOST:PORT [options]\n"
    "       sluice-bench sink --listen ADDR:PORT [options]\n"
    "       sluice-bench dkim-speed [options]\n"
    "       sluice-bench tls-handshake [--count N] [--rounds R] [--json]\n"
    "       sluice-bench log-sync --dir DIR [--seconds 40] [--log-mb 8]\n"
    "                             [--sync-every-ms 2] [--wback]\n"
    "       sluice-bench seg-sync --dir DIR [--records 2000] [--size 1024]\n"
    "                             [--rounds 3] [--writers 1]\n"
    "       sluice-bench --version | --help\n"
    "Run `sluice-bench source --help` or `sluice-bench sink --help` for the\n"
    "options of each.\n";

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "source") == 0)
		return bench_source_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "sink") == 0)
		return bench_sink_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "dkim-speed") == 0)
		return bench_dkim_speed_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "log-sync") == 0)
		return bench_log_sync_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "seg-sync") == 0)
		return bench_seg_sync_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "tls-handshake") == 0)
		return bench_tls_handshake_main(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("sluice-bench %s\n", SLUICE_VERSION);
		return 0;
	}
	fputs(usage_text, stderr);
	return 2;
}
