/* sz_cache_set_json / sz_cache_get_json: the JSON-tagged value form (docs/value-format.md).
 * The tag is added on set and stripped on get, values in other forms are refused, and every
 * NULL argument is SZ_ERR_INVALID. */
#include "check.h"

static void set_json_stores_the_tag_then_the_text(sz_cache *c) {
    const char *json = "{\"a\":[1,2]}";
    CHECK_RC(sz_cache_set_json(c, "j", 1, json, strlen(json), 0), SZ_OK);
    char stored[32];
    size_t len = 0;
    CHECK_RC(sz_cache_get_copy(c, "j", 1, stored, sizeof stored, &len), SZ_OK);
    CHECK(len == 1 + strlen(json) && stored[0] == SZ_TAG_JSON);
    CHECK(memcmp(stored + 1, json, strlen(json)) == 0);
}

static void get_json_strips_the_tag_and_sizes_like_get_copy(sz_cache *c) {
    const char *json = "{\"a\":[1,2]}";
    size_t n = strlen(json), len = 0;
    CHECK_RC(sz_cache_set_json(c, "j", 1, json, n, 0), SZ_OK);
    /* Too small: length reported, buffer untouched. */
    char small[4] = {'x', 'x', 'x', 'x'};
    CHECK_RC(sz_cache_get_json(c, "j", 1, small, sizeof small, &len), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(len == n && small[0] == 'x');
    CHECK_RC(sz_cache_get_json(c, "j", 1, NULL, 0, &len), SZ_ERR_BUFFER_TOO_SMALL);
    CHECK(len == n);
    /* Exactly the text's length: no room for a NUL, none written past it. */
    char exact[32];
    memset(exact, '#', sizeof exact);
    CHECK_RC(sz_cache_get_json(c, "j", 1, exact, n, &len), SZ_OK);
    CHECK(len == n && memcmp(exact, json, n) == 0 && exact[n] == '#');
    /* One more byte: a C string. */
    CHECK_RC(sz_cache_get_json(c, "j", 1, exact, n + 1, &len), SZ_OK);
    CHECK(strcmp(exact, json) == 0);
    /* Empty JSON text is stored as the tag alone and read back as "". */
    CHECK_RC(sz_cache_set_json(c, "e", 1, NULL, 0, 0), SZ_OK);
    CHECK_RC(sz_cache_get_json(c, "e", 1, exact, sizeof exact, &len), SZ_OK);
    CHECK(len == 0 && exact[0] == '\0');
    CHECK_RC(sz_cache_get_json(c, "missing", 7, exact, sizeof exact, &len), SZ_NOT_FOUND);
}

static void values_in_other_forms_are_refused(sz_cache *c) {
    static const char *const others[] = {"plain", "Bbytes", "Stext", "\x80\x05K\x01."};
    char buf[32];
    size_t len = 12345;
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        CHECK_RC(sz_cache_set(c, "o", 1, others[i], strlen(others[i]), 0), SZ_OK);
        CHECK_RC(sz_cache_get_json(c, "o", 1, buf, sizeof buf, &len), SZ_ERR_INVALID);
        CHECK(strstr(sz_last_error(), "not in the JSON-tagged form") != NULL);
    }
    CHECK_RC(sz_cache_set(c, "o", 1, NULL, 0, 0), SZ_OK);
    CHECK_RC(sz_cache_get_json(c, "o", 1, buf, sizeof buf, &len), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "empty") != NULL);
    CHECK(len == 12345); /* outputs untouched on failure */
    /* Text that is not UTF-8 is refused on set, and nothing is stored. */
    CHECK_RC(sz_cache_set_json(c, "bad", 3, "\"\xff\"", 3, 0), SZ_ERR_INVALID);
    CHECK(strstr(sz_last_error(), "UTF-8") != NULL);
    CHECK_RC(sz_cache_exists(c, "bad", 3), SZ_NOT_FOUND);
}

static void null_arguments_are_invalid(sz_cache *c) {
    char buf[8];
    size_t len = 0;
    CHECK_RC(sz_cache_set_json(NULL, "k", 1, "1", 1, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_set_json(c, NULL, 1, "1", 1, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_set_json(c, "k", 1, NULL, 1, 0), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_json(NULL, "k", 1, buf, sizeof buf, &len), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_json(c, NULL, 1, buf, sizeof buf, &len), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_json(c, "k", 1, NULL, sizeof buf, &len), SZ_ERR_INVALID);
    CHECK_RC(sz_cache_get_json(c, "k", 1, buf, sizeof buf, NULL), SZ_ERR_INVALID);
}

int main(void) {
    sz_cache *c = open_with(NULL);
    set_json_stores_the_tag_then_the_text(c);
    get_json_strips_the_tag_and_sizes_like_get_copy(c);
    values_in_other_forms_are_refused(c);
    null_arguments_are_invalid(c);
    sz_cache_close(c);
    CHECK_SUMMARY();
}
