#ifndef TUPP_CCURL_H
#define TUPP_CCURL_H

#include <curl/curl.h>

/// Loads libcurl on first use and runs curl_global_init once. NULL when it is ready,
/// else why it is not. Call before any other function here.
const char *tupp_curl_load(void);

// libcurl's own entry points tupp uses, forwarded to the loaded library (see lazy.c).
CURL *tupp_curl_easy_init(void);
void tupp_curl_easy_cleanup(CURL *handle);
CURLcode tupp_curl_easy_perform(CURL *handle);
const char *tupp_curl_easy_strerror(CURLcode code);
struct curl_slist *tupp_curl_slist_append(struct curl_slist *list, const char *text);
void tupp_curl_slist_free_all(struct curl_slist *list);

// curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: one
// wrapper per argument type.
CURLcode tupp_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode tupp_curl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode tupp_curl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode tupp_curl_setopt_write_function(CURL *handle, CURLoption option, curl_write_callback value);
CURLcode tupp_curl_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode tupp_curl_getinfo_string(CURL *handle, CURLINFO info, const char **value);

#endif
