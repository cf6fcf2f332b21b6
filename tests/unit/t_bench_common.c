/*
 * Description: sluice-bench's shared parsers: the X-Sluice-Bench header
 * (found among other headers, not past the header section, malformed
 * values refused), sizes, durations, percentages and host:port.
 */
#include <string.h>

#include "../../bench/bench_common.h"
#include "check.h"

int
main(void)
{
	char id[64];
	uint64_t v, sent;
	uint32_t ppm;
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *m1 = "Received: from x\r\n\tby y\r\nX-Sluice-Bench: "
	    "id=7-3-42; sent=1700000000123456\r\nSubject: s\r\n\r\nbody\r\n";
	const char *m2 = "Subject: s\r\n\r\nX-Sluice-Bench: id=1; sent=5\r\n";
	const char *m3 = "x-sluice-bench:id=a-b; sent=12\n\nbody";

	printf("RUN header\n");
	CHECK(bench_header_parse(m1, strlen(m1), &sent, id, sizeof(id)));
	CHECK(sent == 1700000000123456ull);
	CHECK(strcmp(id, "7-3-42") == 0);
	CHECK(!bench_header_parse(m2, strlen(m2), &sent, id, sizeof(id)));
	CHECK(bench_header_parse(m3, strlen(m3), &sent, id, sizeof(id)));
	CHECK(sent == 12 && strcmp(id, "a-b") == 0);
	CHECK(!bench_header_parse("X-Sluice-Bench: id=; sent=1\r\n\r\n", 31,
	    &sent, id, sizeof(id)));
	CHECK(!bench_header_parse("X-Sluice-Bench: id=1 sent=1\r\n\r\n", 31,
	    &sent, id, sizeof(id)));
	CHECK(!bench_header_parse("X-Sluice-Bench: id=1; sent=x\r\n\r\n", 32,
	    &sent, id, sizeof(id)));
	CHECK(!bench_header_parse("X-Sluice-Bench: id=123456789; sent=1\r\n",
	    37, &sent, id, 4));

	printf("RUN sizes\n");
	CHECK(bench_parse_size("1024", &v) && v == 1024);
	CHECK(bench_parse_size("20k", &v) && v == 20480);
	CHECK(bench_parse_size("1M", &v) && v == 1048576);
	CHECK(!bench_parse_size("1X", &v));
	CHECK(!bench_parse_size("-1", &v));
	CHECK(!bench_parse_size("", &v));
	CHECK(!bench_parse_size("99999999999999999999G", &v));

	printf("RUN durations\n");
	CHECK(bench_parse_duration("30", &v) && v == 30000000);
	CHECK(bench_parse_duration("500ms", &v) && v == 500000);
	CHECK(bench_parse_duration("1.5s", &v) && v == 1500000);
	CHECK(bench_parse_duration("2m", &v) && v == 120000000);
	CHECK(!bench_parse_duration("2x", &v));
	CHECK(!bench_parse_duration("s", &v));

	printf("RUN percent\n");
	CHECK(bench_parse_percent("5%", &ppm) && ppm == 50000);
	CHECK(bench_parse_percent("0.5%", &ppm) && ppm == 5000);
	CHECK(bench_parse_percent("100%", &ppm) && ppm == 1000000);
	CHECK(!bench_parse_percent("5", &ppm));
	CHECK(!bench_parse_percent("101%", &ppm));

	printf("RUN hostport\n");
	CHECK(bench_parse_hostport("127.0.0.1:25", &ss, &sl));
	CHECK(bench_parse_hostport("[::1]:2525", &ss, &sl));
	CHECK(!bench_parse_hostport("localhost:25", &ss, &sl));
	CHECK(!bench_parse_hostport("127.0.0.1", &ss, &sl));
	return check_done();
}
