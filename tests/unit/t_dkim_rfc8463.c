/*
 * Description: RFC 8463 appendix A, reproduced. With the RFC's published
 * keys (A.1: the Ed25519 seed and the RSA key) and its message (A.3),
 * sluice's header selection, relaxed canonicalisation, header hash and
 * signing give exactly the b= values the RFC prints, for ed25519-sha256
 * and rsa-sha256 alike (both are deterministic), and the body hash its
 * bh=. The public halves printed as DNS records are the RFC's (A.2).
 */
#include <string.h>

#include <openssl/evp.h>

#include "../../dkim/dkim.h"
#include "check.h"

static const char message[] =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";

/* The signature fields of A.3 with their b= values taken out. */
static const char ed_field[] =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";
static const char ed_b[] =
    "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7"
    "ZbnKELq+eXdp1Q1Dw==";

static const char rsa_field[] =
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";
static const char rsa_b[] =
    "F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3DhCVlUrSjV4Bwc"
    "VcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2JzdA+L10TeYt9BgDfQNZtKdN1WO"
    "//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=";

static const char h_list[] =
    "from : to : subject : date : message-id : from : subject : date";

static const char ed_seed_b64[] =
    "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
static const char ed_record[] =
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

static const char rsa_pem[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi\n"
    "Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM\n"
    "KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n"
    "AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm\n"
    "6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe\n"
    "zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy\n"
    "6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc\n"
    "uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy\n"
    "WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd\n"
    "WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a\n"
    "licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst\n"
    "o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe\n"
    "uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL\n"
    "-----END RSA PRIVATE KEY-----\n";
static const char rsa_record[] =
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
    "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
    "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
    "Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

/* Sign the header hash for field with key; base64 into out. */
static void
sign_field(struct dkim_signer *sg, const struct dkim_key *key,
    const char *field, char *out)
{
	size_t hdr_len = dkim_header_end(message, strlen(message), NULL);
	uint8_t hash[DKIM_HASH_LEN], sig[DKIM_SIG_MAX];
	size_t sig_len = 0;

	CHECK(dkim_hash_headers(sg, DKIM_RELAXED, message, hdr_len, h_list,
	    field, strlen(field), hash) == 0);
	CHECK(dkim_sign_hash(sg, key, hash, sig, &sig_len) == 0);
	EVP_EncodeBlock((unsigned char *)out, sig, (int)sig_len);
}

int
main(void)
{
	struct dkim_signer *sg = dkim_signer_new(NULL);
	struct dkim_key *ed = NULL, *rsa = NULL;
	struct dkim_body body = { 0 };
	uint8_t seed[33], bh[DKIM_HASH_LEN];
	char out[DKIM_SIG_MAX * 2], why[256];
	struct buf rec = { 0 };

	CHECK_FATAL(sg != NULL);
	CHECK_FATAL(EVP_DecodeBlock(seed, (const unsigned char *)ed_seed_b64,
	    (int)strlen(ed_seed_b64)) == 33);	/* 32 and a pad byte */
	CHECK_FATAL(dkim_key_ed25519_seed(seed, &ed) == 0);
	CHECK_FATAL(dkim_key_load(rsa_pem, DKIM_RSA_SHA256, &rsa, why,
	    sizeof(why)) == 0);
	CHECK(dkim_key_bits(rsa) == 1024);

	/* A.3: the body hash. */
	CHECK(dkim_body_start(&body, DKIM_RELAXED) == 0);
	dkim_body_feed(&body, message, strlen(message));
	CHECK(dkim_body_final(&body, bh) == 0);
	EVP_EncodeBlock((unsigned char *)out, bh, DKIM_HASH_LEN);
	CHECK(strcmp(out, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=") == 0);
	dkim_body_free(&body);

	/* A.3: both signatures, to the byte. */
	sign_field(sg, ed, ed_field, out);
	if (strcmp(out, ed_b) != 0)
		fprintf(stderr, "ed25519 b= %s\n  want %s\n", out, ed_b);
	CHECK(strcmp(out, ed_b) == 0);
	sign_field(sg, rsa, rsa_field, out);
	if (strcmp(out, rsa_b) != 0)
		fprintf(stderr, "rsa b= %s\n  want %s\n", out, rsa_b);
	CHECK(strcmp(out, rsa_b) == 0);

	/* A change to a signed field changes the hash (and fails). */
	{
		static const char other[] = "DKIM-Signature: v=1; a=ed25519-sha256; "
		    "c=relaxed/relaxed; d=football.example.com; s=brisbane; b=";

		sign_field(sg, ed, other, out);
		CHECK(strcmp(out, ed_b) != 0);
	}

	/* A.2: the records. */
	CHECK(dkim_key_record(ed, &rec) == 0);
	CHECK(rec.len == strlen(ed_record) &&
	    memcmp(rec.data, ed_record, rec.len) == 0);
	buf_reset(&rec);
	CHECK(dkim_key_record(rsa, &rec) == 0);
	CHECK(rec.len == strlen(rsa_record) &&
	    memcmp(rec.data, rsa_record, rec.len) == 0);
	CHECK(dkim_key_record_matches(rsa, rsa_record, why, sizeof(why)) == 1);
	CHECK(dkim_key_record_matches(ed, ed_record, why, sizeof(why)) == 1);
	CHECK(dkim_key_record_matches(ed, rsa_record, why, sizeof(why)) == 0);
	CHECK(dkim_key_record_matches(rsa, "v=spf1 -all", why,
	    sizeof(why)) == -1);

	buf_free(&rec);
	dkim_key_free(ed);
	dkim_key_free(rsa);
	dkim_signer_free(sg);
	return check_done();
}
