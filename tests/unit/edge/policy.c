/*
 * tests/unit/edge/policy.c - access lists and redirection hosts (edge/policy.c).
 */
#include "edge/policy.h"

#include "tests/unit/unit.h"

static struct cidr prefix(const char *text)
{
	struct cidr c;

	CHECK(cidr_parse(text, &c) == 0);
	return c;
}

static struct addr peer(const char *text)
{
	struct addr a;

	CHECK(addr_parse(text, &a) == 0);
	return a;
}

/* Which entry names a host or a port: the closest, the first on a tie. */
static void test_access_lookup(void)
{
	char *h0[] = {"*.home.test"}, *h1[] = {"nas.home.test", "*.b.home.test"},
	     *h2[] = {"*.b.home.test"};
	struct port_range p0[] = {{ROUTE_KIND_TCP, 1, 65535}}, p1[] = {{ROUTE_KIND_TCP, 22, 22}},
	                  p2[] = {{ROUTE_KIND_UDP, 22, 22}};
	struct edge_access acl[] = {
	    {.hosts = h0, .nhosts = 1, .ports = p0, .nports = 1},
	    {.hosts = h1, .nhosts = 2, .ports = p1, .nports = 1},
	    {.hosts = h2, .nhosts = 1, .ports = p2, .nports = 1},
	};
	struct edge_config cfg = {.access = acl, .naccess = 3};

	CHECK(policy_access_host(&cfg, "nas.home.test") == &acl[1]);
	CHECK(policy_access_host(&cfg, "tv.home.test") == &acl[0]);
	CHECK(policy_access_host(&cfg, "x.b.home.test") == &acl[1]); /* tie: the first */
	CHECK(policy_access_host(&cfg, "home.test") == NULL);
	CHECK(policy_access_host(&cfg, "nas.home.test.evil") == NULL);
	CHECK(policy_access_port(&cfg, ROUTE_KIND_TCP, 22) == &acl[1]); /* the narrowest */
	CHECK(policy_access_port(&cfg, ROUTE_KIND_TCP, 23) == &acl[0]);
	CHECK(policy_access_port(&cfg, ROUTE_KIND_UDP, 22) == &acl[2]);
	CHECK(policy_access_port(&cfg, ROUTE_KIND_UDP, 23) == NULL);
}

/* deny first; then allow, when it lists anything. */
static void test_allows(void)
{
	struct cidr allow[] = {prefix("10.0.0.0/8"), prefix("2001:db8::/32")},
	            deny[] = {prefix("10.6.6.6")};
	struct edge_access both = {.allow = allow, .nallow = 2, .deny = deny, .ndeny = 1},
	                   deny_only = {.deny = deny, .ndeny = 1};

	CHECK(policy_allows(NULL, &(struct addr){0}));
	{
		struct addr a = peer("10.1.2.3:4"), b = peer("10.6.6.6:4"), c = peer("11.0.0.1:4"),
		            d = peer("[2001:db8::5]:4"), e = peer("[::ffff:10.6.6.6]:4");

		CHECK(policy_allows(&both, &a));
		CHECK(!policy_allows(&both, &b));
		CHECK(!policy_allows(&both, &c));
		CHECK(policy_allows(&both, &d));
		CHECK(!policy_allows(&both, &e));
		CHECK(policy_allows(&deny_only, &a));
		CHECK(policy_allows(&deny_only, &c));
		CHECK(!policy_allows(&deny_only, &b));
	}
}

static void test_redirect_lookup(void)
{
	struct edge_redirect r[] = {
	    {.host = "*.old.test", .to = "https://a.test"},
	    {.host = "old.test", .to = "https://b.test"},
	    {.host = "*.x.old.test", .to = "https://c.test"},
	};
	struct edge_config cfg = {.redirects = r, .nredirects = 3};

	CHECK(policy_redirect(&cfg, "old.test") == &r[1]);
	CHECK(policy_redirect(&cfg, "y.old.test") == &r[0]);
	CHECK(policy_redirect(&cfg, "y.x.old.test") == &r[2]);
	CHECK(policy_redirect(&cfg, "new.test") == NULL);
}

static void test_location(void)
{
	static const struct {
		const char *to;
		int keep;
		const char *target, *want;
	} cases[] = {
	    {"https://new.test", 1, "/a/b?c=1", "https://new.test/a/b?c=1"},
	    {"https://new.test", 1, "/", "https://new.test/"},
	    {"https://new.test", 1, "*", "https://new.test/"},
	    {"https://new.test/", 1, "/a", "https://new.test/a"},
	    {"https://new.test/blog", 1, "/a", "https://new.test/blog/a"},
	    {"https://new.test/blog/", 1, "/a?x", "https://new.test/blog/a?x"},
	    {"https://new.test:8443", 1, "http://old.test/p?q", "https://new.test:8443/p?q"},
	    {"https://new.test", 1, "http://old.test", "https://new.test/"},
	    {"https://new.test", 1, "http://old.test?q", "https://new.test/?q"},
	    {"https://new.test/x", 0, "/a?b", "https://new.test/x"},
	    {"http://new.test", 0, "/a?b", "http://new.test/"},
	    {"https://[2001:db8::1]:8443", 1, "/v6", "https://[2001:db8::1]:8443/v6"},
	};
	char out[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct edge_redirect r = {.to = (char *)cases[i].to, .keep_path = cases[i].keep};
		int n =
		    policy_location(&r, cases[i].target, strlen(cases[i].target), out, sizeof(out));

		if (n < 0 || strcmp(out, cases[i].want) != 0)
			fprintf(stderr, "  %s + %s: got '%s', want '%s'\n", cases[i].to,
			        cases[i].target, n < 0 ? "(error)" : out, cases[i].want);
		CHECK(n == (int)strlen(cases[i].want) && strcmp(out, cases[i].want) == 0);
	}
	{
		struct edge_redirect r = {.to = "https://new.test", .keep_path = 1};

		CHECK(policy_location(&r, "/abcdef", 7, out, 20) == -1); /* does not fit */
		CHECK(policy_location(&r, "/abc", 4, out, 21) == 20);
	}
}

int main(void)
{
	RUN(test_access_lookup);
	RUN(test_allows);
	RUN(test_redirect_lookup);
	RUN(test_location);
	UNIT_END();
}
