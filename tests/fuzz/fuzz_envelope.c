/*
 * fuzz_envelope.c - libFuzzer target: arbitrary bytes as an encoded
 * envelope (what recovery and sluicectl read back from disk). Decoding
 * must reject garbage cleanly; what decodes must re-encode to the same
 * bytes.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../queue/queue.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envelope e;
	uint8_t *again;
	size_t n;

	if (envelope_decode(data, size, &e) != 0)
		return 0;
	n = envelope_encoded_len(&e);
	again = malloc(n ? n : 1);
	assert(again != NULL);
	assert(envelope_encode(&e, again) == n);
	assert(n == size && memcmp(again, data, n) == 0);
	free(again);
	envelope_release(&e);
	return 0;
}
