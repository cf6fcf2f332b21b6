/*
 * config_default.c - the configuration used when sluiced runs without -c.
 *
 * Contract: config_default_yaml is a complete, valid sluice YAML file. It
 * is loaded by config_load(cfg, NULL, ...) under the name
 * "(embedded default)", and `sluiced -n` can print it as a starting point
 * for a real file. Its values equal the schema defaults in config.c (the
 * unit test t_config checks that), so it documents them rather than
 * changing them; keep the two in step when a default changes.
 */
#include "config.h"

const char config_default_yaml[] =
	"# sluice configuration (embedded default).\n"
	"# Every key is optional; a missing key takes the value shown here.\n"
	"# See docs/configuration.md for every key, its type and its range.\n"
	"\n"
	"# Name used in the SMTP greeting and EHLO. Default: the system host name.\n"
	"#hostname: mx.example.org\n"
	"\n"
	"# Queue and message store directory.\n"
	"spool: ./var/spool\n"
	"\n"
	"# Worker shards; 0 means one per online CPU core.\n"
	"shards: 0\n"
	"\n"
	"# Where to accept SMTP: numeric \"IPv4:port\" or \"[IPv6]:port\".\n"
	"# Quote IPv6 addresses: a bare [::1]:25 is not a valid YAML scalar.\n"
	"listen:\n"
	"  - address: 127.0.0.1:2525\n"
	"\n"
	"# Clients allowed to relay, as CIDR networks. A bare address is a\n"
	"# single host. IPv4 networks also match IPv4-mapped IPv6 clients.\n"
	"allowed_networks:\n"
	"  - 127.0.0.0/8\n"
	"  - ::1/128\n"
	"\n"
	"limits:\n"
	"  # Sizes: bytes, or a number with K, M, G or T (powers of 1024).\n"
	"  message_size: 10M          # 1K .. 4294967295\n"
	"  recipients: 1000           # RCPT per transaction, 1 .. 100000\n"
	"  line_length: 2048          # command line incl. CRLF, 512 .. 64K\n"
	"  errors: 20                 # error replies before 421, 1 .. 1000\n"
	"  # Durations: seconds, or a number with ms, s, m or h.\n"
	"  idle_timeout: 5m           # 100ms .. 1h\n"
	"  connections: 1000          # inbound in total, 1 .. 1000000\n"
	"  connections_per_client: 100  # per client IP, 1 .. 1000000\n"
	"\n"
	"queue:\n"
	"  segment_size: 64M          # spool segment size, 1M .. 4G\n"
	"  index_size: 4G             # LMDB map size, 16M .. 1T\n"
	"\n"
	"# How long to wait for sessions and deliveries on shutdown, 0 .. 1h.\n"
	"shutdown_timeout: 30s\n";
