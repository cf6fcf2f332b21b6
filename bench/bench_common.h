/*
 * bench_common.h - what sluice-bench's source and sink share: the header
 * that carries a message's identity and send time, and option value
 * parsers.
 *
 * Every message the source sends carries, as its first header,
 *   X-Sluice-Bench: id=<run>-<connection>-<sequence>; sent=<unix microseconds>
 * where sent is the time the transaction was scheduled (open loop) or
 * started (closed loop). The sink parses it to report end-to-end latency
 * through any relay in between, which keeps headers it does not know.
 * Clocks come from lib/clock.h (real time for the header, monotonic for
 * intervals).
 */
#ifndef SLUICE_BENCH_COMMON_H
#define SLUICE_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define BENCH_HEADER "X-Sluice-Bench"

/*
 * Find the X-Sluice-Bench header in a message's header section (up to the
 * first empty line) and return its sent= value and the id text (copied,
 * NUL-terminated, into id of idlen bytes). false when absent or malformed.
 */
bool bench_header_parse(const char *msg, size_t len, uint64_t *sent_us,
    char *id, size_t idlen);

/* "1024", "20k", "1M" (binary multiples). false on junk or overflow. */
bool bench_parse_size(const char *s, uint64_t *out);
/* "30", "30s", "500ms", "5m", "1h" into microseconds. */
bool bench_parse_duration(const char *s, uint64_t *out_us);
/* "5%", "0.5%", "12.5%" into parts per million. */
bool bench_parse_percent(const char *s, uint32_t *out_ppm);
/* "127.0.0.1:25", "[::1]:25", "localhost:25" is refused (numeric only). */
bool bench_parse_hostport(const char *s, struct sockaddr_storage *sa,
    socklen_t *len);

#endif
