/*
 * hex.h - 64-bit numbers as fixed-width upper-case hex, so that the text
 * sorts like the number (queue ids: queue/queue_id.c, and the inbound
 * session that prints them without depending on the queue).
 */
#ifndef SLUICE_HEX_H
#define SLUICE_HEX_H

#include <stdint.h>

#define HEX64_LEN 16

/* v as HEX64_LEN digits, leading zeros kept, NUL-terminated. */
static inline void
hex64_format(uint64_t v, char out[HEX64_LEN + 1])
{
	static const char digits[] = "0123456789ABCDEF";

	for (int i = HEX64_LEN - 1; i >= 0; i--) {
		out[i] = digits[v & 0xf];
		v >>= 4;
	}
	out[HEX64_LEN] = '\0';
}

#endif
