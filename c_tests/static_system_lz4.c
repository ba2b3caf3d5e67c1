/* An application that links libsmartcache.a together with its own (the system's) liblz4 gets
 * its own LZ4: the cache's bundled LZ4 is local to the archive, so the two never mix. Built by
 * `make test-c-symbols` against the .a and the system liblz4 (liblz4-dev). */
#include "check.h"
#include <lz4.h>

static void test_application_gets_the_system_lz4(void) {
    /* LZ4_VERSION_STRING comes from the system header; the call resolves at link time. Were the
     * archive's bundled LZ4 global, the linker would take it (it comes first on the command
     * line) and this would report the bundled version instead. */
    printf("system lz4 header %s, LZ4_versionString() %s\n", LZ4_VERSION_STRING,
           LZ4_versionString());
    CHECK(strcmp(LZ4_versionString(), LZ4_VERSION_STRING) == 0);
    CHECK(LZ4_versionNumber() == LZ4_VERSION_NUMBER);

    /* And the system LZ4 works for the application as usual. */
    static char text[8192], packed[LZ4_COMPRESSBOUND(8192)], back[8192];
    for (size_t i = 0; i < sizeof text; i++) text[i] = "application data "[i % 17];
    int n = LZ4_compress_default(text, packed, (int)sizeof text, (int)sizeof packed);
    CHECK(n > 0 && n < (int)sizeof text / 4);
    CHECK(LZ4_decompress_safe(packed, back, n, (int)sizeof back) == (int)sizeof text);
    CHECK(memcmp(text, back, sizeof text) == 0);
}

static void test_the_cache_still_compresses_with_its_own_lz4(void) {
    sz_cache *c = open_with((const char *const[]){"compression_min_size", "512", NULL});
    static char doc[64 * 1024];
    for (size_t i = 0; i < sizeof doc; i++) doc[i] = "{\"id\": 7, \"name\": \"cached\"} "[i % 29];
    CHECK_RC(sz_cache_set(c, "doc", 3, doc, sizeof doc, 0), SZ_OK);
    sz_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_RC(sz_cache_stats(c, &s), SZ_OK);
    CHECK(s.compression_ratio > 10.0 && s.memory_bytes < sizeof doc / 4);
    sz_value *v = NULL;
    CHECK_RC(sz_cache_get(c, "doc", 3, &v), SZ_OK);
    CHECK(v && sz_value_len(v) == sizeof doc && memcmp(sz_value_data(v), doc, sizeof doc) == 0);
    sz_value_release(v);
    sz_cache_close(c);
}

int main(void) {
    test_application_gets_the_system_lz4();
    test_the_cache_still_compresses_with_its_own_lz4();
    CHECK_SUMMARY();
}
