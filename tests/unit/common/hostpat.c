/*
 * tests/unit/common/hostpat.c - host names and wildcard patterns.
 */
#include <string.h>

#include "common/hostpat.h"
#include "tests/unit/unit.h"

static void test_normalize(void)
{
	char h[] = "WWW.Example.COM";

	host_normalize(h);
	CHECK(strcmp(h, "www.example.com") == 0);
}

static void test_host_valid(void)
{
	char long_label[80], long_host[300];

	CHECK(host_valid("example.com"));
	CHECK(host_valid("a"));
	CHECK(host_valid("a-b.c0.d"));
	CHECK(host_valid("1.2.3.4"));
	CHECK(host_valid("xn--bcher-kva.example"));
	CHECK(!host_valid(""));
	CHECK(!host_valid("a..b"));
	CHECK(!host_valid(".a"));
	CHECK(!host_valid("a."));
	CHECK(!host_valid("-a.b"));
	CHECK(!host_valid("a-.b"));
	CHECK(!host_valid("A.b"));
	CHECK(!host_valid("a_b.c"));
	CHECK(!host_valid("a b"));
	CHECK(!host_valid("*.a"));
	CHECK(!host_valid("a:80"));

	memset(long_label, 'a', 63);
	long_label[63] = '\0';
	CHECK(host_valid(long_label));
	long_label[63] = 'a';
	long_label[64] = '\0';
	CHECK(!host_valid(long_label));

	/* 253 characters is the longest name; 254 is too long */
	for (size_t i = 0; i < 253; i++)
		long_host[i] = (i % 2) ? '.' : 'a';
	long_host[253] = '\0';
	CHECK(host_valid(long_host));
	long_host[253] = 'a';
	long_host[252] = '.';
	long_host[254] = '\0';
	CHECK(!host_valid(long_host));
}

static void test_pattern_valid(void)
{
	CHECK(hostpat_valid("example.com"));
	CHECK(hostpat_valid("*.example.com"));
	CHECK(hostpat_valid("*.com"));
	CHECK(!hostpat_valid("*"));
	CHECK(!hostpat_valid("*."));
	CHECK(!hostpat_valid("*example.com"));
	CHECK(!hostpat_valid("a.*.example.com"));
	CHECK(!hostpat_valid("**.example.com"));
	CHECK(!hostpat_valid("*.*.example.com"));
	CHECK(!hostpat_valid("a..b"));
	CHECK(!hostpat_valid(""));
}

static void test_match(void)
{
	CHECK(hostpat_match("example.com", "example.com"));
	CHECK(!hostpat_match("example.com", "www.example.com"));
	CHECK(!hostpat_match("example.com", "example.org"));
	CHECK(hostpat_match("*.example.com", "a.example.com"));
	CHECK(hostpat_match("*.example.com", "a.b.example.com"));
	CHECK(!hostpat_match("*.example.com", "example.com"));
	CHECK(!hostpat_match("*.example.com", "badexample.com"));
	CHECK(!hostpat_match("*.example.com", ".example.com"));
	CHECK(!hostpat_match("*.example.com", "a.example.com.evil"));
	CHECK(!hostpat_match("*.example.com", ""));
}

int main(void)
{
	RUN(test_normalize);
	RUN(test_host_valid);
	RUN(test_pattern_valid);
	RUN(test_match);
	UNIT_END();
}
